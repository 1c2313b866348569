"""A digital image-quality phantom: a water cylinder with rods of several contrasts and a uniform centre.

The section is drawn already blurred by a Gaussian of known width (``blur_sigma_mm``), the stand-in for the
scanner's resolution: each pixel is the exact value of the disks convolved with that Gaussian at its centre (a
point inside a disk of radius ``R`` after a Gaussian blur ``s``: the non-central chi-square probability
``P(|X| <= R)``, ``X ~ N(p, s^2 I)``), so the TTF of every rod is ``exp(-2 pi^2 s^2 f^2)`` and its TTF50 is
``sqrt(ln 2 / 2) / (pi s)``. :func:`ctdenoise.simulate.simulate_low_dose` adds the noise of a scan without
changing that resolution. The rods follow AAPM TG-233's multi-contrast inserts (bone ~+955 HU, acrylic ~+120,
polyethylene ~-95) plus a soft-tissue lesion of +35 HU, where learned denoisers lose sharpness first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ncx2

from ctdenoise.errors import ConfigError
from ctdenoise.iq.layout import UNIFORM_MARGIN_MM, Insert, Layout, roi_size_px, uniform_mask, uniform_rois


@dataclass(frozen=True)
class Rod:
    """A rod of the phantom: its ``name``, contrast to water ``contrast_hu`` and angle (degrees, counter-clockwise
    from the image's +column direction) of its centre around the phantom's axis."""

    name: str
    contrast_hu: float
    angle_deg: float


#: TG-233-like rods: bone, acrylic, polyethylene and a low-contrast (+35 HU) soft-tissue lesion.
DEFAULT_RODS: tuple[Rod, ...] = (
    Rod("bone", 955.0, 45.0), Rod("acrylic", 120.0, 135.0), Rod("polyethylene", -95.0, 225.0),
    Rod("soft lesion", 35.0, 315.0),
)


def blurred_disk(distance_mm: np.ndarray, radius_mm: float, sigma_mm: float) -> np.ndarray:
    """The fraction of a Gaussian (standard deviation ``sigma_mm``) centred at each ``distance_mm`` from a disk's
    centre that falls inside the disk: the disk's indicator convolved with the Gaussian. Exact (non-central
    chi-square with 2 degrees of freedom); a sharp step where ``sigma_mm`` is 0."""
    distance = np.asarray(distance_mm, dtype=np.float64)
    if sigma_mm <= 0:
        return (distance <= radius_mm).astype(np.float64)
    out = (distance <= radius_mm).astype(np.float64)
    near = np.abs(distance - radius_mm) < 8.0 * sigma_mm
    out[near] = ncx2.cdf((radius_mm / sigma_mm) ** 2, 2, (distance[near] / sigma_mm) ** 2)
    return out


@dataclass(frozen=True)
class DigitalPhantom:
    """A ``size_px`` x ``size_px`` section at ``pixel_mm``: a water cylinder of ``diameter_mm`` in air with
    ``rods`` of ``rod_diameter_mm`` whose centres lie ``rod_ring_mm`` from the axis, all blurred by a Gaussian
    of ``blur_sigma_mm``. The defaults (256 px of 0.8 mm, a 190 mm cylinder, 20 mm rods) keep a simulated scan
    under half a second per realisation on one core."""

    size_px: int = 256
    pixel_mm: float = 0.8
    diameter_mm: float = 190.0
    rod_diameter_mm: float = 20.0
    rod_ring_mm: float = 62.0
    blur_sigma_mm: float = 0.6
    rods: tuple[Rod, ...] = DEFAULT_RODS

    def __post_init__(self) -> None:
        if self.size_px < 32 or not self.pixel_mm > 0 or self.blur_sigma_mm < 0:
            raise ConfigError("phantom", f"needs at least 32 pixels, a positive pixel size and blur >= 0, got {self}")
        if self.diameter_mm / 2 + 4 * self.blur_sigma_mm > self.size_px * self.pixel_mm / 2:
            raise ConfigError("phantom", f"a {self.diameter_mm} mm cylinder does not fit a field of "
                              f"{self.size_px * self.pixel_mm:g} mm")
        if self.rod_ring_mm + self.rod_diameter_mm / 2 + UNIFORM_MARGIN_MM > self.diameter_mm / 2:
            raise ConfigError("phantom", "the rods must lie inside the cylinder")

    @property
    def centre(self) -> float:
        """Row and column (pixels) of the cylinder's axis."""
        return (self.size_px - 1) / 2.0

    def inserts(self) -> tuple[Insert, ...]:
        """The rods as :class:`~ctdenoise.iq.layout.Insert` (pixel centre and radius, name)."""
        ring = self.rod_ring_mm / self.pixel_mm
        return tuple(
            Insert(self.centre - ring * np.sin(np.radians(rod.angle_deg)), self.centre + ring * np.cos(np.radians(rod.angle_deg)),
                   self.rod_diameter_mm / 2 / self.pixel_mm, rod.name)
            for rod in self.rods
        )

    def image(self) -> np.ndarray:
        """The noiseless section in HU (float64): air -1000, water 0, rod ``i`` at ``rods[i].contrast_hu``."""
        rows, cols = np.indices((self.size_px, self.size_px))
        distance = np.hypot(rows - self.centre, cols - self.centre) * self.pixel_mm
        hu = -1000.0 + 1000.0 * blurred_disk(distance, self.diameter_mm / 2, self.blur_sigma_mm)
        for rod, insert in zip(self.rods, self.inserts()):
            rod_distance = np.hypot(rows - insert.row, cols - insert.col) * self.pixel_mm
            hu += rod.contrast_hu * blurred_disk(rod_distance, self.rod_diameter_mm / 2, self.blur_sigma_mm)
        return hu

    def layout(self, roi_size_mm: float | None = None) -> Layout:
        """The rods and the uniform ROIs (water at least :data:`~ctdenoise.iq.layout.UNIFORM_MARGIN_MM` from the
        wall and the rods) of this phantom, from its geometry rather than from detection."""
        rows, cols = np.indices((self.size_px, self.size_px))
        body = np.hypot(rows - self.centre, cols - self.centre) * self.pixel_mm < self.diameter_mm / 2
        inserts = self.inserts()
        uniform = uniform_mask(body, inserts, UNIFORM_MARGIN_MM / self.pixel_mm)
        size = roi_size_px(self.pixel_mm) if roi_size_mm is None else roi_size_px(self.pixel_mm, roi_size_mm)
        return Layout(inserts, uniform_rois(uniform, size))

    def analytic_ttf(self, frequency: np.ndarray) -> np.ndarray:
        """The TTF of every rod of the noiseless phantom: the Gaussian blur's ``exp(-2 pi^2 s^2 f^2)``."""
        return np.exp(-2.0 * (np.pi * self.blur_sigma_mm * np.asarray(frequency)) ** 2)

    def analytic_ttf_at(self, level: float) -> float:
        """The frequency (cycles/mm) where :meth:`analytic_ttf` falls to ``level`` (0.5: TTF50)."""
        return float(np.sqrt(-np.log(level) / 2.0) / (np.pi * self.blur_sigma_mm))
