"""Self-supervised training pairs made from noisy slices only (no clean target exists at a site).

* ``neighbours`` (neighbouring-slice Noise2Noise): input slice ``z``, target the mean of slices ``z-1`` and
  ``z+1``. For non-overlapping slices the noise of the three slices is independent, and the mean of the two
  neighbours is the linear interpolation of the anatomy at ``z``, so the model learns ``E[target | input]``: the
  slice without its noise, up to what changes along z between neighbours (hence the thick-slice rule,
  :data:`MAX_NEIGHBOUR_SPACING_MM`). The target carries half the noise variance of one slice.
* ``recorrupt`` (Recorrupted-to-Recorrupted, Pang et al. CVPR 2021, with the site's own noise texture): from one
  slice ``y``, input ``y + a*n`` and target ``y - n/a`` where ``n`` is synthetic noise with the NPS measured on
  ``y``'s series (:class:`NoiseTexture`). If ``n`` has the covariance of the scan's noise, the two noises are
  uncorrelated, so CT's spatially correlated noise is respected (pixel sub-sampling or blind-spot methods assume
  independent pixels, which smooth kernels violate). Needs no neighbours: usable on thick slices and single images.

Every crop is flipped/rotated (:func:`ctdenoise.training.pairs.dihedral`, the same for input and target).
All randomness comes from the numpy Generator passed in, so a batch is a pure function of the run's seed and
iteration (resumable without saving random state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ctdenoise.adapt.data import NoisySeries
from ctdenoise.intensity import hu_to_unit
from ctdenoise.training.pairs import dihedral

METHODS = ("neighbours", "recorrupt")
DEFAULT_METHOD = "recorrupt"
"""The method when none is asked for, by measurement (docs/adapt.md, ``scripts/measure_adapt.py``): on 1.5 mm head
slices ``recorrupt`` gained 1.2 dB over the shipped model and ``neighbours`` lost 6.8 dB (the anatomy between
neighbours differs by more than the noise); on 2.5 mm chest slices neither helped and the guard refused both."""
MAX_NEIGHBOUR_SPACING_MM = 3.0
"""Thickest slice spacing for which an explicit ``neighbours`` is accepted: its target interpolates the anatomy
over twice the spacing (the two neighbours), 6 mm at this limit. Thinner is no promise: the measurements on
docs/adapt.md (1.5 and 2.5 mm) are both below it."""
MIN_NEIGHBOUR_SLICES = 8
"""Fewest slices of a series for ``neighbours``: the guard holds some out, and an input needs both neighbours."""
RECORRUPT_ALPHA = 0.5
"""``a`` of the recorrupted pairs (Pang et al.'s choice): input noise variance (1 + a^2), target (1 + 1/a^2) times the scan's."""
TEXTURE_PATCH = 32
"""Side (pixels) of the uniform patches the noise texture is measured on."""
SOFT_TISSUE_HU = (-100.0, 200.0)


def choose_method(requested: str | None, series: list[NoisySeries]) -> tuple[str, str]:
    """The method to run and why: ``requested``, or :data:`DEFAULT_METHOD` when it is None. ``neighbours`` on a
    series with fewer than :data:`MIN_NEIGHBOUR_SLICES` slices or slices more than
    :data:`MAX_NEIGHBOUR_SPACING_MM` apart raises ValueError with the reason; an unknown name raises ValueError."""
    if requested is None:
        return DEFAULT_METHOD, "the default: the better of the two methods where they were measured (docs/adapt.md)"
    if requested not in METHODS:
        raise ValueError(f"unknown method {requested!r}; expected one of {', '.join(METHODS)}")
    if requested == "neighbours":
        thickest = max(s.slice_mm for s in series)
        shortest = min(s.hu.shape[0] for s in series)
        if shortest < MIN_NEIGHBOUR_SLICES:
            raise ValueError(f"--method neighbours: a series has {shortest} slice(s); neighbour pairs need at least "
                             f"{MIN_NEIGHBOUR_SLICES}; use --method recorrupt")
        if thickest > MAX_NEIGHBOUR_SPACING_MM:
            raise ValueError(f"--method neighbours: slices {thickest:g} mm apart are too thick for neighbour pairs "
                             f"(limit {MAX_NEIGHBOUR_SPACING_MM:g} mm: neighbours differ in anatomy, not only in noise); "
                             "use --method recorrupt")
    return requested, "requested"


@dataclass(frozen=True)
class NoiseTexture:
    """Stationary noise with a measured NPS: ``filter`` (P, P) is the real-space kernel whose convolution with
    unit white noise has that NPS, scaled to the measured noise std ``std_hu``."""

    filter: np.ndarray
    std_hu: float

    def sample(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """One noise field (HU) of ``shape``."""
        pad = self.filter.shape[0]
        white = rng.standard_normal((shape[0] + pad, shape[1] + pad))
        field = ndimage.convolve(white, self.filter, mode="wrap")[pad // 2: pad // 2 + shape[0], pad // 2: pad // 2 + shape[1]]
        return field.astype(np.float32)


def measure_texture(series: list[NoisySeries], rng: np.random.Generator) -> NoiseTexture:
    """The noise texture of the series' training slices: the mean power spectrum of the quietest quarter of
    the :data:`TEXTURE_PATCH`-pixel patches of soft tissue (by the 5x5 median, in :data:`SOFT_TISSUE_HU`),
    each patch with its best-fitting plane removed (anatomy's slow trends). ValueError if no such patch exists."""
    patches = []
    p = TEXTURE_PATCH
    yy, xx = np.mgrid[0:p, 0:p].astype(np.float64)
    design = np.stack([np.ones(p * p), yy.ravel(), xx.ravel()], axis=1)
    for s in series:
        for k in s.training_slices()[:: max(1, len(s.training_slices()) // 8)]:
            image = s.hu[k].astype(np.float64)
            median = ndimage.median_filter(image, size=5)
            for top in range(0, image.shape[0] - p + 1, p // 2):
                for left in range(0, image.shape[1] - p + 1, p // 2):
                    window = (slice(top, top + p), slice(left, left + p))
                    if not np.all((median[window] > SOFT_TISSUE_HU[0]) & (median[window] < SOFT_TISSUE_HU[1])):
                        continue
                    values = image[window].ravel()
                    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
                    patches.append((values - design @ coefficients).reshape(p, p))
    if not patches:
        raise ValueError("no uniform soft-tissue patch of "
                         f"{p}x{p} pixels was found to measure the noise texture on")
    stds = np.array([patch.std() for patch in patches])
    quiet = np.array(patches)[stds <= np.percentile(stds, 25)]
    power = np.mean(np.abs(np.fft.fft2(quiet)) ** 2, axis=0) / (p * p)  # per-frequency variance
    kernel = np.fft.fftshift(np.real(np.fft.ifft2(np.sqrt(power))))
    std_hu = float(np.sqrt(power.mean()))
    probe = NoiseTexture(kernel, std_hu).sample((4 * p, 4 * p), rng)
    return NoiseTexture(kernel * std_hu / float(probe.std()), std_hu)


class PairSource(Protocol):
    """What the fine-tuning loop draws its batches from."""

    def batch(self, size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """``size`` (input, target) pairs, each (size, 1, crop, crop) float32 on the model scale."""
        ...


class PairMaker:
    """Batches of (input, target) crops on the model scale, (B, 1, crop, crop) float32, by ``method``."""

    def __init__(self, series: list[NoisySeries], method: str, crop: int, texture: NoiseTexture | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        if method == "recorrupt" and texture is None:
            raise ValueError("the recorrupt method needs the noise texture")
        self.series, self.method, self.crop, self.texture = series, method, crop, texture
        self.places = [(i, k) for i, s in enumerate(series) for k in self._inputs(s)]
        if not self.places:
            raise ValueError(f"no slice can be a {method} training input once the guard's slices are held out")

    def _inputs(self, s: NoisySeries) -> list[int]:
        if self.method == "recorrupt":
            return s.training_slices()
        allowed = set(s.training_slices())
        return [k for k in allowed if k - 1 in allowed and k + 1 in allowed]

    def batch(self, size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        pairs = [self._pair(rng) for _ in range(size)]
        return torch.stack([p[0] for p in pairs]).unsqueeze(1), torch.stack([p[1] for p in pairs]).unsqueeze(1)

    def _pair(self, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        i, k = self.places[int(rng.integers(len(self.places)))]
        hu = self.series[i].hu
        top = int(rng.integers(hu.shape[1] - self.crop + 1))
        left = int(rng.integers(hu.shape[2] - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        noisy = hu[k][window]
        if self.method == "neighbours":
            source, target = noisy, (hu[k - 1][window] + hu[k + 1][window]) / 2
        else:
            assert self.texture is not None
            noise = self.texture.sample((self.crop, self.crop), rng)
            source, target = noisy + RECORRUPT_ALPHA * noise, noisy - noise / RECORRUPT_ALPHA
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        model_input = hu_to_unit(torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32)))
        # the target is not clipped: clipping its noise in air would bias what the model learns there
        model_target = hu_to_unit(torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)), clip=False)
        return dihedral(model_input, turns, flip), dihedral(model_target, turns, flip)
