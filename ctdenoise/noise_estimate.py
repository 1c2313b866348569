"""A cheap, robust estimate of the noise level of a CT series in HU, for before/after reports.

What :func:`estimate_noise_hu` measures, exactly:

1. Slices: at most :data:`NOISE_SLICES` slices, evenly spread from the first to the last.
2. Region: soft tissue inside the body, i.e. pixels whose 5x5 local median lies in
   :data:`SOFT_TISSUE_HU` (-100 to 200 HU: fat excluded, muscle, organs, blood, contrast-enhanced
   parenchyma included), eroded by 2 pixels so that the filter below never reaches outside the region.
   The region is chosen on the median, not on the noisy values, so noise does not bias which pixels count.
3. Residual: the 3x3 filter ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]`` (Immerkaer 1996, "Fast noise
   variance estimation"). It is zero on any image that is linear (a constant or a ramp) over the 3x3
   neighbourhood, so smooth anatomy leaves almost nothing, and on white Gaussian noise of standard
   deviation sigma its output has standard deviation ``6 sigma`` (the root sum of squares of the weights).
4. Estimate: ``median(|residual|) / 0.6745 / 6`` over the region's pixels of all chosen slices (the median
   absolute value, scaled to a Gaussian standard deviation): edges and small structures that survive
   step 3 are a minority of the pixels and barely move the median.

The result is the standard deviation (HU) of the white Gaussian noise that would give the observed
high-frequency residual. For white noise it is the pixel noise itself (tests: within 15 % at 10, 20 and
40 HU on a piecewise-constant phantom, near 0 without noise). Real CT noise is spatially correlated (the
reconstruction kernel), and a denoised image's remaining noise even more so: the estimate then measures
the fine-grain part of the noise and reads lower than the standard deviation in a uniform ROI. It is
meant for comparing the same series before and after denoising, not as an absolute ROI measurement.
Cost: two small filters on a few slices, milliseconds for 512x512 slices.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

NOISE_SLICES = 5
"""How many slices (evenly spread through the series) the estimate looks at."""
SOFT_TISSUE_HU = (-100.0, 200.0)
"""The HU window (of the 5x5 local median) that counts as soft tissue inside the body."""
MIN_REGION_PIXELS = 200
"""Fewer soft-tissue pixels than this (over all chosen slices) give no estimate."""

_LAPLACIAN = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_LAPLACIAN_GAIN = 6.0  # sqrt(sum of squared weights): the filter's gain on white noise
_MAD_TO_SIGMA = 1.0 / 0.6745  # median |x| of a zero-mean Gaussian is 0.6745 sigma
_REGION_MEDIAN_SIZE = 5
_REGION_EROSION = 2


def estimate_noise_hu(hu: np.ndarray, slices: int = NOISE_SLICES) -> float | None:
    """Estimated noise standard deviation (HU) of a (slices, rows, cols) or (rows, cols) HU array.

    See the module docstring for exactly what is measured. Returns None when the chosen slices hold
    fewer than :data:`MIN_REGION_PIXELS` soft-tissue pixels (e.g. a phantom of air, or bone only) or are
    smaller than 8x8; the input is not modified.
    """
    array = np.asarray(hu)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected a (slices, rows, cols) HU array, got shape {array.shape}")
    if array.shape[0] == 0 or min(array.shape[1:]) < 8:
        return None
    chosen = np.unique(np.linspace(0, array.shape[0] - 1, num=min(slices, array.shape[0])).round().astype(int))
    residuals = [_soft_tissue_residual(np.asarray(array[k], dtype=np.float64)) for k in chosen]
    values = np.concatenate(residuals)
    if values.size < MIN_REGION_PIXELS:
        return None
    return float(np.median(np.abs(values)) * _MAD_TO_SIGMA / _LAPLACIAN_GAIN)


def _soft_tissue_residual(image: np.ndarray) -> np.ndarray:
    """The high-pass residual of ``image`` at its (eroded) soft-tissue pixels."""
    finite = np.isfinite(image)
    image = np.where(finite, image, -1024.0)
    local = ndimage.median_filter(image, size=_REGION_MEDIAN_SIZE, mode="nearest")
    low, high = SOFT_TISSUE_HU
    region = (local >= low) & (local <= high) & finite
    region = ndimage.binary_erosion(region, iterations=_REGION_EROSION, border_value=0)
    residual = ndimage.convolve(image, _LAPLACIAN, mode="nearest")
    return residual[region]
