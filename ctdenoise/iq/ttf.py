"""Sharpness at a given contrast: the task transfer function (TTF) of a circular insert, after AAPM TG-233.

The circular-edge method of AAPM Report 233 section 5.2 (Richard, Husarik, Yadava, Murphy, Samei, "Towards
task-based assessment of CT performance: system and object MTF across different reconstruction algorithms",
Med. Phys. 39, 2012; Chen et al., Med. Phys. 41, 2014): on the **ensemble mean** of repeated scans (so that the
noise does not bias it), the pixels around a circular insert are binned by their distance from its centre into
bins a fraction of a pixel wide (oversampling, possible because the pixel centres fall at every sub-pixel
distance from a circle's centre): the **edge-spread function**. Normalised to the insert's contrast and
differentiated it is the **line-spread function**, which is windowed about the edge and Fourier transformed;
its magnitude normalised at zero frequency is the TTF. TTF50 and TTF10 are the frequencies where it first falls
to 0.5 and 0.1. A nonlinear (e.g. learned) method can have a different TTF at each contrast and noise level,
which is why each insert is measured on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ctdenoise.errors import ConfigError
from ctdenoise.iq.noise import as_spacing

#: ESF bin width as a fraction of a pixel (TG-233: about one tenth).
ESF_BIN_FRACTION = 0.1
#: Half-width (pixels) of the band around the edge the ESF covers, at most this and at most 0.9 radius.
EDGE_HALF_WIDTH_PX = 12.0
#: The TTF is sampled this finely (cycles/mm) by zero-padding the LSF.
TTF_FREQUENCY_STEP = 0.005


@dataclass(frozen=True)
class TTF:
    """The TTF of one insert: ``value`` at ``frequency`` (cycles/mm) up to ``sqrt 2`` times the Nyquist frequency
    (the corner of the 2-D frequency grid), the insert's measured ``contrast_hu`` (insert minus background in the
    mean image), ``ttf50`` and ``ttf10`` (cycles/mm; None where the curve does not fall that low within
    ``frequency``), the Nyquist frequency, and the ESF it came from (``esf_radius_mm``, ``esf_hu``)."""

    frequency: np.ndarray
    value: np.ndarray
    contrast_hu: float
    ttf50: float | None
    ttf10: float | None
    nyquist: float
    esf_radius_mm: np.ndarray
    esf_hu: np.ndarray

    def at(self, frequency: np.ndarray) -> np.ndarray:
        """The TTF interpolated at ``frequency`` (cycles/mm); zero beyond the measured range."""
        return np.interp(frequency, self.frequency, self.value, right=0.0)

    def to_dict(self) -> dict:
        """JSON form of the curve up to the Nyquist frequency (``frequency``, ``value``)."""
        shown = self.frequency <= self.nyquist + 1e-9
        return {"frequency": [round(float(f), 4) for f in self.frequency[shown][::2]],
                "value": [round(float(v), 4) for v in self.value[shown][::2]]}


def tukey_window(offset: np.ndarray, half_width: float) -> np.ndarray:
    """1 within ``half_width / 2`` of zero, a cosine taper to 0 at ``half_width`` (a Tukey window, alpha 0.5):
    it quiets the noisy tails of the LSF without narrowing an edge spread over up to a quarter of the band."""
    x = np.clip((np.abs(offset) - half_width / 2) / (half_width / 2), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def crossing(frequency: np.ndarray, curve: np.ndarray, level: float) -> float | None:
    """The first frequency at which ``curve`` falls to ``level`` (linear interpolation), None if it never does."""
    below = np.flatnonzero(curve <= level)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(frequency[0])
    f0, f1, c0, c1 = frequency[i - 1], frequency[i], curve[i - 1], curve[i]
    return float(f0 + (c0 - level) * (f1 - f0) / (c0 - c1)) if c0 != c1 else float(f1)


def ttf_circular_insert(
    mean_image: np.ndarray,
    centre: Sequence[float],
    radius_px: float,
    spacing_mm: float | Sequence[float],
    *,
    edge_half_width_px: float | None = None,
    bin_fraction: float = ESF_BIN_FRACTION,
) -> TTF:
    """The TTF of the circular insert of radius ``radius_px`` centred at ``centre`` = (row, col) (pixels,
    sub-pixel allowed) in the ensemble-mean image ``mean_image`` (HU), by the TG-233 circular-edge method.

    The ESF covers distances ``radius +- w`` from the centre, ``w = min(edge_half_width_px, 0.9 radius)``
    (default :data:`EDGE_HALF_WIDTH_PX`), in bins of ``bin_fraction`` pixels (empty bins interpolated); the
    contrast is the mean of the inner half of that band minus the mean of its outer half's outer part
    (``r < R - w/2`` and ``r > R + w/2``); the ESF is normalised by it (1 in the insert, 0 outside), so inserts
    darker than their background work the same. The LSF (``-d ESF / dr``) is windowed over ``R +- w``
    (:func:`tukey_window`: flat over the inner half) and Fourier transformed. A Gaussian blur of standard deviation ``s`` mm gives ``exp(-2 pi^2 s^2 f^2)``.
    ConfigError when the band leaves the image or the insert has no contrast.
    """
    image = np.asarray(mean_image, dtype=np.float64)
    dy, dx = as_spacing(spacing_mm)
    pixel = float(np.sqrt(dy * dx))
    radius = float(radius_px)
    if not radius >= 2.0:
        raise ConfigError("radius_px", f"an insert needs a radius of at least 2 pixels, got {radius_px!r}")
    half = min(float(edge_half_width_px or EDGE_HALF_WIDTH_PX), 0.9 * radius)
    row0, col0 = float(centre[0]), float(centre[1])
    reach = int(np.ceil(radius + half)) + 1
    top, left = int(np.floor(row0)) - reach, int(np.floor(col0)) - reach
    bottom, right = int(np.ceil(row0)) + reach + 1, int(np.ceil(col0)) + reach + 1
    if top < 0 or left < 0 or bottom > image.shape[0] or right > image.shape[1]:
        raise ConfigError("inserts", f"the insert at ({row0:.1f}, {col0:.1f}) radius {radius:.1f} px lies too close "
                          f"to the image border for its edge profile ({radius + half:.1f} px needed)")
    rows, cols = np.mgrid[top:bottom, left:right]
    distance = np.hypot((rows - row0) * dy, (cols - col0) * dx) / pixel  # pixels
    values = image[top:bottom, left:right]
    band = np.abs(distance - radius) <= half
    inside = band & (distance < radius - half / 2)
    outside = band & (distance > radius + half / 2)
    contrast = float(values[inside].mean() - values[outside].mean())
    if not abs(contrast) > 1e-6:
        raise ConfigError("inserts", f"the insert at ({row0:.1f}, {col0:.1f}) has no contrast to its background")
    edges = np.arange(radius - half, radius + half + bin_fraction / 2, bin_fraction)
    index = np.digitize(distance[band], edges) - 1
    nbins = edges.size - 1
    ok = (index >= 0) & (index < nbins)
    sums = np.bincount(index[ok], weights=values[band][ok], minlength=nbins)
    counts = np.bincount(index[ok], minlength=nbins)
    centres = (edges[:-1] + edges[1:]) / 2
    filled = counts > 0
    esf_hu = np.interp(centres, centres[filled], sums[filled] / counts[filled])
    background = float(values[outside].mean())
    esf = (esf_hu - background) / contrast
    step_mm = bin_fraction * pixel
    lsf = -np.gradient(esf, step_mm)
    lsf *= tukey_window(centres - radius, half)
    n_fft = max(lsf.size, int(np.ceil(1.0 / (TTF_FREQUENCY_STEP * step_mm))))
    spectrum = np.abs(np.fft.rfft(lsf, n=n_fft))
    frequency = np.fft.rfftfreq(n_fft, d=step_mm)
    nyquist = 0.5 / max(dy, dx)
    keep = frequency <= np.sqrt(2.0) * 0.5 / min(dy, dx) + 1e-9
    value = spectrum[keep] / spectrum[0]
    frequency = frequency[keep]
    within = frequency <= nyquist + 1e-9
    return TTF(
        frequency, value, contrast,
        crossing(frequency[within], value[within], 0.5), crossing(frequency[within], value[within], 0.1),
        nyquist, centres * pixel, esf_hu,
    )
