"""Noise magnitude and noise texture (the noise power spectrum) of repeated scans, after AAPM TG-233.

AAPM Report 233 (Samei et al., "Performance evaluation of computed tomography systems", 2019), section 4.2 and 4.3:

* a **noise-only image** is one realisation minus the ensemble mean of ``n`` repeated scans of the same section,
  scaled by ``sqrt(n / (n - 1))`` so that its variance is that of one scan (:func:`noise_only_images`; for two
  scans this is their difference divided by ``sqrt 2``);
* **noise** is the standard deviation of noise-only images in uniform regions of interest (:func:`measure_noise`);
* the **2-D NPS** is the mean over ROIs of ``|FFT2(roi - mean(roi))|^2 * dx * dy / (Nx * Ny)`` in HU^2 mm^2
  (:func:`nps_2d`; its integral over frequency is the noise variance);
* its **radial profile** against cycles/mm, the **mean frequency** ``f_av = sum f NPS(f) / sum NPS(f)`` over that
  profile and the **peak frequency** ``f_peak`` describe the noise texture (:func:`radial_nps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ctdenoise.errors import ConfigError


class Roi(NamedTuple):
    """A square region of interest: top-left ``row``, ``col`` and side ``size``, in pixels."""

    row: int
    col: int
    size: int

    def take(self, images: np.ndarray) -> np.ndarray:
        """The ROI of an image (rows, cols) or of every image of a stack (n, rows, cols)."""
        return images[..., self.row : self.row + self.size, self.col : self.col + self.size]


def as_spacing(spacing_mm: float | Sequence[float]) -> tuple[float, float]:
    """(row, column) pixel spacing in mm from one number or two; ConfigError unless positive and finite."""
    values = np.atleast_1d(np.asarray(spacing_mm, dtype=np.float64)).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError("spacing_mm", f"needs one or two positive pixel spacings in mm, got {spacing_mm!r}")
    return float(values[0]), float(values[1])


def noise_only_images(realisations: np.ndarray) -> np.ndarray:
    """Noise-only images of ``n >= 2`` repeated scans (n, rows, cols) of one section (TG-233 section 4.2).

    Each realisation minus the ensemble mean, times ``sqrt(n / (n - 1))``: the result has the variance of one
    scan's noise (subtracting an ensemble mean of ``n`` removes ``1 / n`` of it). For ``n = 2`` each image is
    ``+-(a - b) / sqrt 2``. Returns float64; ConfigError for fewer than two realisations.
    """
    stack = np.asarray(realisations, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise ConfigError("realisations", f"needs a stack of at least 2 repeated scans, got shape {stack.shape}")
    n = stack.shape[0]
    return (stack - stack.mean(axis=0)) * np.sqrt(n / (n - 1.0))


def measure_noise(noise_only_stack: np.ndarray, rois: Sequence[Roi]) -> float:
    """Noise (HU): the standard deviation of noise-only images in the uniform ``rois`` (TG-233 section 4.2).

    The square root of the mean, over images and ROIs, of each ROI's sample variance (ddof 1, about its own
    mean). ``noise_only_stack`` is (n, rows, cols) or one image, as :func:`noise_only_images` returns them.
    """
    stack = np.asarray(noise_only_stack, dtype=np.float64)
    stack = stack[None] if stack.ndim == 2 else stack
    if not rois:
        raise ConfigError("rois", "needs at least one uniform ROI")
    variances = [roi.take(stack).reshape(stack.shape[0], -1).var(axis=1, ddof=1) for roi in rois]
    return float(np.sqrt(np.mean(variances)))


def roi_stack(noise_only_stack: np.ndarray, rois: Sequence[Roi]) -> np.ndarray:
    """Every ROI of every image as one (n * len(rois), size, size) stack; all ROIs must have the same size."""
    stack = np.asarray(noise_only_stack, dtype=np.float64)
    stack = stack[None] if stack.ndim == 2 else stack
    sizes = {roi.size for roi in rois}
    if len(sizes) != 1:
        raise ConfigError("rois", f"the NPS needs ROIs of one size, got sizes {sorted(sizes)}")
    return np.concatenate([roi.take(stack) for roi in rois])


@dataclass(frozen=True)
class NPS2D:
    """A 2-D noise power spectrum: ``values`` (HU^2 mm^2) on the frequencies ``freq_row`` x ``freq_col``
    (cycles/mm, zero frequency in the middle, as ``numpy.fft.fftshift`` orders them), from ``n_rois`` ROIs."""

    values: np.ndarray
    freq_row: np.ndarray
    freq_col: np.ndarray
    n_rois: int

    @property
    def df(self) -> tuple[float, float]:
        """Frequency step (row, column) in cycles/mm."""
        return float(self.freq_row[1] - self.freq_row[0]), float(self.freq_col[1] - self.freq_col[0])

    @property
    def variance(self) -> float:
        """The integral of the NPS over frequency: the noise variance (HU^2) it stands for."""
        return float(self.values.sum() * self.df[0] * self.df[1])

    def radial_frequency(self) -> np.ndarray:
        """``|f|`` (cycles/mm) at every sample of :attr:`values`."""
        return np.hypot(self.freq_row[:, None], self.freq_col[None, :])


def nps_2d(rois: np.ndarray, spacing_mm: float | Sequence[float]) -> NPS2D:
    """The 2-D NPS of noise-only ROIs (m, Ny, Nx) in HU with pixel spacing ``spacing_mm`` (TG-233 eq. 4.4).

    ``NPS(fx, fy) = mean over ROIs of |FFT2(roi - mean(roi))|^2 * dx * dy / (Nx * Ny)``, in HU^2 mm^2; each ROI's
    own mean is removed (the ensemble mean was already subtracted by :func:`noise_only_images`). White noise of
    standard deviation ``s`` gives a flat NPS of ``s^2 dx dy`` (``s^2`` px^2), and the sum of the NPS times the
    frequency step is the variance.
    """
    stack = np.asarray(rois, dtype=np.float64)
    stack = stack[None] if stack.ndim == 2 else stack
    if stack.ndim != 3 or min(stack.shape[1:]) < 4:
        raise ConfigError("rois", f"needs (m, rows, cols) ROIs of at least 4x4 pixels, got shape {stack.shape}")
    dy, dx = as_spacing(spacing_mm)
    ny, nx = stack.shape[1:]
    centred = stack - stack.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2
    values = np.fft.fftshift(power.mean(axis=0)) * dx * dy / (nx * ny)
    freq_row = np.fft.fftshift(np.fft.fftfreq(ny, d=dy))
    freq_col = np.fft.fftshift(np.fft.fftfreq(nx, d=dx))
    return NPS2D(values, freq_row, freq_col, stack.shape[0])


@dataclass(frozen=True)
class RadialNPS:
    """The radial (1-D) NPS: ``value`` (HU^2 mm^2) at ``frequency`` (cycles/mm), its mean frequency ``f_av``
    and peak frequency ``f_peak`` (cycles/mm)."""

    frequency: np.ndarray
    value: np.ndarray
    f_av: float
    f_peak: float

    def to_dict(self) -> dict:
        """The JSON form: lists and numbers (``iq.json``'s ``nps`` entry)."""
        return {
            "frequency": [round(float(f), 5) for f in self.frequency],
            "value": [float(f"{v:.6g}") for v in self.value],
            "f_av": round(self.f_av, 5),
            "f_peak": round(self.f_peak, 5),
        }


def radial_nps(nps: NPS2D, bin_width: float | None = None) -> RadialNPS:
    """The radial profile of ``nps``: the mean of the 2-D samples in rings of ``bin_width`` cycles/mm (default:
    the coarser frequency step of the two axes) centred on multiples of it, from the first ring to the Nyquist
    frequency of the coarser axis; the zero-frequency sample is left out (it is zero by construction).

    ``f_av = sum f NPS(f) / sum NPS(f)`` over this profile and ``f_peak`` its arg max (TG-233 section 4.3).
    """
    width = float(bin_width) if bin_width is not None else max(nps.df)
    if not width > 0:
        raise ConfigError("bin_width", f"must be positive, got {bin_width!r}")
    radius = nps.radial_frequency()
    nyquist = min(-nps.freq_row[0], -nps.freq_col[0])
    index = np.rint(radius / width).astype(np.int64)
    rings = int(np.floor(nyquist / width + 1e-9))
    keep = (index >= 1) & (index <= rings)
    sums = np.bincount(index[keep], weights=nps.values[keep], minlength=rings + 1)[1:]
    counts = np.bincount(index[keep], minlength=rings + 1)[1:]
    filled = counts > 0
    frequency = (np.arange(1, rings + 1) * width)[filled]
    value = sums[filled] / counts[filled]
    if value.size == 0 or value.sum() <= 0:
        raise ConfigError("nps", "the NPS has no power below the Nyquist frequency (an image without noise?)")
    f_av = float(np.sum(frequency * value) / np.sum(value))
    return RadialNPS(frequency, value, f_av, float(frequency[int(np.argmax(value))]))
