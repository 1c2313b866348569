"""The guard of ``ctdenoise adapt``: a no-reference comparison of the adapted model with its base on held-out
slices, which refuses an adapted model that is worse.

There is no clean image at a site, so the measure uses the noisy held-out slice ``y`` and a model's output
``x`` only, with ``r = y - x`` the residual the model removed:

* **noise removed** (HU): the standard deviation of ``r`` over *flat* pixels, where a good denoiser removes noise
  and nothing else; negative, ``-sqrt(var(x) - var(y))``, when the output varies more than the input there (it
  added something). Flat pixels are chosen on ``y`` smoothed by a Gaussian of :data:`REGION_SIGMA_PX` pixels (so
  the choice depends on neither model): soft tissue (-100 to 200 HU) whose smoothed gradient magnitude is in the
  lowest :data:`FLAT_PERCENTILE` percent of the body's. Taken over all flat pixels at once, it counts coarse
  (low-frequency) noise too, which a local window would miss.
* **bias** (HU): ``|mean(r)|`` over the flat pixels; a denoiser must not shift the HU of uniform tissue.
* **structure removed** (HU): the RMS of the component of ``r`` along ``L``, the Laplacian of ``y`` smoothed the
  same way: ``|<r, L>| / (||L|| sqrt(N))`` over the ``N`` pixels. Blurring removes a residual proportional to the
  image's Laplacian (for a Gaussian blur of width ``s``, ``r ~ -(s^2/2) lap(x)``), so it scores high; a residual
  of white noise is uncorrelated with ``L``. (Coarse noise survives the smoothing, so removing it adds a little
  here too: on the chest domain of docs/adapt.md, about 2 HU for 70 % of its noise removed, against 25 HU for a
  Gaussian blur of one pixel.)

The **score** is structure removed plus bias minus noise removed (HU, lower is better; 0 for a model that
changes nothing). The adapted model is refused when its score on the held-out slices exceeds the base model's by
more than :data:`TOLERANCE_HU`. A model whose output is not finite scores infinity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

REGION_SIGMA_PX = 2.0
FLAT_PERCENTILE = 30.0
SOFT_TISSUE_HU = (-100.0, 200.0)
BODY_HU = -500.0
MIN_FLAT_PIXELS = 81
TOLERANCE_HU = 0.5
"""Score difference (HU) within which the adapted model counts as no worse (measurement jitter)."""
GUARD_CROP = 256
"""Side of the centre crop of each held-out slice that is scored (caps the CPU time of the check)."""


@dataclass(frozen=True)
class GuardScore:
    """The no-reference measures of one model on the held-out slices (means over slices), in HU."""

    noise_removed_hu: float
    structure_removed_hu: float
    bias_hu: float

    @property
    def score(self) -> float:
        return self.structure_removed_hu + self.bias_hu - self.noise_removed_hu

    def to_dict(self) -> dict[str, float | None]:
        """The measures and the score rounded to 0.001 HU, for JSON (None where not finite)."""
        values = {**asdict(self), "score": self.score}
        return {k: round(v, 3) if math.isfinite(v) else None for k, v in values.items()}


def centre_crop(image: np.ndarray, size: int = GUARD_CROP) -> np.ndarray:
    """The centre ``size`` x ``size`` pixels of a (rows, cols) image (all of it along a shorter side)."""
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top:top + size, left:left + size]


def _flat_pixels(smooth: np.ndarray) -> np.ndarray:
    """Uniform soft tissue of the smoothed noisy slice (the quietest body pixels when it holds none)."""
    gradient = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
    body = smooth > BODY_HU
    if body.sum() < MIN_FLAT_PIXELS:
        body = np.ones_like(body)
    quiet = body & (gradient <= np.percentile(gradient[body], FLAT_PERCENTILE))
    flat = quiet & (smooth > SOFT_TISSUE_HU[0]) & (smooth < SOFT_TISSUE_HU[1])
    return flat if flat.sum() >= MIN_FLAT_PIXELS else quiet


def slice_measures(noisy: np.ndarray, output: np.ndarray) -> tuple[float, float, float]:
    """(noise removed, structure removed, bias) in HU of one output slice against its noisy input (module docstring)."""
    if not np.all(np.isfinite(output)):
        return -math.inf, math.inf, math.inf
    y = noisy.astype(np.float64)
    x = output.astype(np.float64)
    smooth = ndimage.gaussian_filter(y, REGION_SIGMA_PX)
    residual = y - x
    laplacian = ndimage.laplace(smooth)
    norm = float(np.sqrt(np.sum(laplacian**2)))
    structure = abs(float(np.sum(residual * laplacian))) / (norm * math.sqrt(y.size)) if norm > 0 else 0.0
    flat = _flat_pixels(smooth)
    added = float(x[flat].var() - y[flat].var())
    removed = -math.sqrt(added) if added > 0 else float(residual[flat].std())
    return removed, structure, abs(float(residual[flat].mean()))


def guard_score(noisy: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> GuardScore:
    """The mean measures over held-out slices ``noisy`` and a model's ``outputs`` of them (same shapes)."""
    measures = np.array([slice_measures(n, o) for n, o in zip(noisy, outputs, strict=True)])
    return GuardScore(*(float(value) for value in measures.mean(axis=0)))


def refuses(base: GuardScore, adapted: GuardScore) -> bool:
    """True when ``adapted`` is worse than ``base`` by more than :data:`TOLERANCE_HU` (or not finite)."""
    return not adapted.score <= base.score + TOLERANCE_HU
