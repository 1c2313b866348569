"""Noisy/clean training pairs: noise models applied to slices, random crops, flips/rotations and mixup.

All randomness comes from the numpy Generator passed in, so a batch is a pure function of the
generator's seed: training seeds one per (seed, rank, iteration) and is therefore reproducible and
resumable without saving any random state.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from ctdenoise.intensity import hu_to_unit
from ctdenoise.recon_kernels import ReconKernel, get_kernel
from ctdenoise.simulate import add_gaussian_noise, simulate_low_dose
from ctdenoise.training.config import AugmentConfig, NoiseConfig
from ctdenoise.training.data import CTSlice

log = logging.getLogger(__name__)


def draw_dose(noise: NoiseConfig, rng: np.random.Generator) -> float:
    """A dose fraction from ``noise.dose_range``, uniform or log-uniform as ``noise.dose_sampling`` says."""
    low, high = noise.dose_range
    if noise.dose_sampling == "log-uniform":
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


def _draw_name(names: tuple[str, ...], rng: np.random.Generator) -> str:
    """One of ``names``; a single name consumes no random number (older recipes keep their noise)."""
    return names[0] if len(names) == 1 else names[int(rng.integers(len(names)))]


def draw_kernel(noise: NoiseConfig, pixel_spacing_mm: float, rng: np.random.Generator) -> ReconKernel:
    """A kernel drawn from ``noise.kernels``, its cutoff scaled by a log-uniform draw from
    ``noise.kernel_cutoff_scale`` when that is set (no draw otherwise, so older recipes keep their noise)."""
    kernel = get_kernel(_draw_name(noise.kernels, rng))
    if noise.kernel_cutoff_scale is None:
        return kernel
    low, high = noise.kernel_cutoff_scale
    return kernel.scaled(float(np.exp(rng.uniform(np.log(low), np.log(high)))), pixel_spacing_mm)


def simulate_slice(ct_slice: CTSlice, noise: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """A physics-simulated low-dose version (HU) of one slice: dose fraction drawn by :func:`draw_dose`,
    kernel by :func:`draw_kernel` and bowtie from ``noise.bowties``."""
    dose = draw_dose(noise, rng)
    kernel = draw_kernel(noise, float(np.mean(ct_slice.spacing_mm)), rng)
    bowtie = _draw_name(noise.bowties, rng)
    return simulate_low_dose(
        ct_slice.hu,
        ct_slice.spacing_mm,
        dose_fraction=dose,
        i0=noise.i0,
        electronic_noise_var=noise.electronic_noise_var,
        n_views=noise.n_views,
        kernel=kernel,
        bowtie=bowtie,
        seed=rng,
    )


def gaussian_unit(clean_unit: Tensor, noise: NoiseConfig, rng: np.random.Generator) -> Tensor:
    """``clean_unit`` plus i.i.d. Gaussian noise of std ``noise.sigma`` (or drawn from ``noise.sigma_range``)."""
    sigma = noise.sigma if noise.sigma_range is None else float(rng.uniform(*noise.sigma_range))
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    return add_gaussian_noise(clean_unit, sigma, rng=generator)


def noisy_unit(clean_unit: Tensor, noisy_hu: np.ndarray | None, noise: NoiseConfig, rng: np.random.Generator) -> Tensor:
    """The noisy input on the model scale for one crop, as ``noise.kind`` says.

    ``noisy_hu`` is the matching crop of a physics realisation (needed for ``physics``, and for ``mixed``
    when the crop's draw falls on physics noise); ``none`` returns ``clean_unit`` itself.
    """
    kind = noise.kind
    if kind == "mixed":
        draw = rng.uniform()
        kind = "none" if draw < noise.clean_share else "gaussian" if draw < noise.clean_share + noise.gaussian_share else "physics"
    if kind == "none":
        return clean_unit.clone()
    if kind == "gaussian":
        return gaussian_unit(clean_unit, noise, rng)
    return hu_to_unit(torch.from_numpy(noisy_hu))


class PairSampler:
    """Draws batches of (noisy, clean) random crops, shape (B, 1, crop, crop), on the model scale.

    Physics noise is simulated at construction: ``noise.realisations`` copies of every slice
    (seeded by ``seed`` and the slice index); each crop takes one of them at random. Gaussian noise
    and the choice of a ``mixed`` noise are drawn per crop. With ``augment.dihedral`` each pair is flipped/rotated (one of 8, shared by
    input and target).
    """

    def __init__(
        self, slices: list[CTSlice], noise: NoiseConfig, crop_size: int, augment: AugmentConfig, seed: int
    ) -> None:
        self.slices = slices
        self.noise = noise
        self.crop_size = crop_size
        self.augment = augment
        self.clean = [hu_to_unit(torch.from_numpy(s.hu)) for s in slices]
        self.simulated: list[list[np.ndarray]] = []
        if noise.uses_physics:
            log.info("simulating %d low-dose realisations of %d slices", noise.realisations, len(slices))
            self.simulated = [
                [simulate_slice(s, noise, np.random.default_rng([seed, index, r])) for r in range(noise.realisations)]
                for index, s in enumerate(slices)
            ]

    def batch(self, size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """``size`` random pairs as (noisy, clean) float32 tensors of shape (size, 1, crop, crop)."""
        pairs = [self._pair(rng) for _ in range(size)]
        noisy = torch.stack([p[0] for p in pairs]).unsqueeze(1)
        clean = torch.stack([p[1] for p in pairs]).unsqueeze(1)
        return noisy.float(), clean.float()

    def _pair(self, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        index = int(rng.integers(len(self.slices)))
        rows, cols = self.slices[index].hu.shape
        top = int(rng.integers(rows - self.crop_size + 1))
        left = int(rng.integers(cols - self.crop_size + 1))
        window = (slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        clean = self.clean[index][window]
        noisy_hu = None
        if self.simulated:
            noisy_hu = self.simulated[index][int(rng.integers(len(self.simulated[index])))][window]
        noisy = noisy_unit(clean, noisy_hu, self.noise, rng)
        if self.augment.dihedral:
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            noisy, clean = (dihedral(t, turns, flip) for t in (noisy, clean))
        return noisy, clean


def dihedral(image: Tensor, turns: int, flip: bool) -> Tensor:
    """One of the 8 symmetries of a square on the last two dims: ``turns`` x 90 degrees, then a left-right flip."""
    out = torch.rot90(image, turns, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if flip else out


def mixup(noisy: Tensor, clean: Tensor, augment: AugmentConfig, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """With probability ``augment.mixup_prob``, mix the batch with a permutation of itself.

    Input and target get the same weight ``lam ~ Beta(mixup_beta, mixup_beta)`` and the same permutation
    (the Restormer/CLIPDenoising ``Mixing_Augment``); otherwise the batch is returned unchanged.
    """
    if augment.mixup_prob == 0 or rng.uniform() >= augment.mixup_prob:
        return noisy, clean
    lam = float(rng.beta(augment.mixup_beta, augment.mixup_beta))
    order = torch.from_numpy(rng.permutation(noisy.shape[0]))
    return lam * noisy + (1 - lam) * noisy[order], lam * clean + (1 - lam) * clean[order]
