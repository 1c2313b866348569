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
from ctdenoise.training.data import CTSlice, context_neighbours

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


def simulate_slice(
    ct_slice: CTSlice, noise: NoiseConfig, rng: np.random.Generator, scan_rng: np.random.Generator | None = None
) -> np.ndarray:
    """A physics-simulated low-dose version (HU) of one slice: dose fraction drawn by :func:`draw_dose`,
    kernel by :func:`draw_kernel` and bowtie from ``noise.bowties``, then the noise itself, all from ``rng``.

    ``scan_rng`` (if given) draws the dose, kernel and bowtie instead, so slices given generators seeded alike
    share them, as the slices of one scan do, while ``rng`` draws each slice's own noise (the 2.5-D input's
    neighbours)."""
    scan = rng if scan_rng is None else scan_rng
    dose = draw_dose(noise, scan)
    kernel = draw_kernel(noise, float(np.mean(ct_slice.spacing_mm)), scan)
    bowtie = _draw_name(noise.bowties, scan)
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


def draw_sigma(noise: NoiseConfig, rng: np.random.Generator) -> float:
    """The Gaussian std: ``noise.sigma``, or a uniform draw from ``noise.sigma_range`` when that is set."""
    return noise.sigma if noise.sigma_range is None else float(rng.uniform(*noise.sigma_range))


def gaussian_unit(
    clean_unit: Tensor, noise: NoiseConfig, rng: np.random.Generator, sigma: float | None = None
) -> Tensor:
    """``clean_unit`` plus i.i.d. Gaussian noise of std ``sigma`` (None: :func:`draw_sigma`)."""
    sigma = draw_sigma(noise, rng) if sigma is None else sigma
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    return add_gaussian_noise(clean_unit, sigma, rng=generator)


def draw_noise_kind(noise: NoiseConfig, rng: np.random.Generator) -> str:
    """``noise.kind``, or for ``mixed`` one of none / gaussian / physics in the stated shares (one uniform draw)."""
    kind = noise.kind
    if kind == "mixed":
        draw = rng.uniform()
        kind = "none" if draw < noise.clean_share else "gaussian" if draw < noise.clean_share + noise.gaussian_share else "physics"
    return kind


def _apply_noise(kind: str, clean_unit: Tensor, noisy_hu: np.ndarray | None, noise: NoiseConfig,
                 rng: np.random.Generator, sigma: float | None = None) -> Tensor:
    if kind == "none":
        return clean_unit.clone()
    if kind == "gaussian":
        return gaussian_unit(clean_unit, noise, rng, sigma)
    return hu_to_unit(torch.from_numpy(noisy_hu))


def noisy_unit(clean_unit: Tensor, noisy_hu: np.ndarray | None, noise: NoiseConfig, rng: np.random.Generator) -> Tensor:
    """The noisy input on the model scale for one crop, as ``noise.kind`` says.

    ``noisy_hu`` is the matching crop of a physics realisation (needed for ``physics``, and for ``mixed``
    when the crop's draw falls on physics noise); ``none`` returns ``clean_unit`` itself.
    """
    return _apply_noise(draw_noise_kind(noise, rng), clean_unit, noisy_hu, noise, rng)


def noisy_stack(
    clean_units: list[Tensor], noisy_hus: list[np.ndarray | None], noise: NoiseConfig, rng: np.random.Generator
) -> Tensor:
    """The noisy (S, crop, crop) input of a 2.5-D crop: the slices' crops ``clean_units`` (below .. above) with
    noise as one scan has it: the kind (for ``mixed``) and the Gaussian std are drawn once for the stack, and each
    slice gets its own noise (its own Gaussian draw, or its own physics realisation ``noisy_hus``)."""
    kind = draw_noise_kind(noise, rng)
    sigma = draw_sigma(noise, rng) if kind == "gaussian" else None
    return torch.stack([_apply_noise(kind, clean, noisy_hu, noise, rng, sigma)
                        for clean, noisy_hu in zip(clean_units, noisy_hus)])


class PairSampler:
    """Draws batches of (noisy, clean) random crops on the model scale: noisy (B, S, crop, crop) and clean
    (B, 1, crop, crop), S = ``context_slices``.

    Physics noise is simulated at construction: ``noise.realisations`` copies of every slice
    (seeded by ``seed`` and the slice index); each crop takes one of them at random. Gaussian noise
    and the choice of a ``mixed`` noise are drawn per crop. With ``augment.dihedral`` each pair is flipped/rotated (one of 8, shared by
    input and target).

    With ``context_slices`` 3 (the 2.5-D input) the noisy input of a crop of slice i stacks the same window of the
    slices below, at and above it in its volume (:func:`~ctdenoise.training.data.context_neighbours`: an end slice
    stands in for its missing neighbour), under the same flip/rotation; the target is slice i's clean crop. The
    slices of a stack share what one scan shares: realisation r of every slice of a series has the dose, kernel and
    bowtie drawn from (``seed``, series, r), the stack takes one r, and the noise kind and Gaussian std are drawn
    once per stack (:func:`noisy_stack`); each slice's noise itself is its own. With ``context_slices`` 1 nothing
    of this is drawn: 2-D recipes draw exactly the batches they drew before the option existed.
    """

    def __init__(
        self, slices: list[CTSlice], noise: NoiseConfig, crop_size: int, augment: AugmentConfig, seed: int,
        context_slices: int = 1,
    ) -> None:
        self.slices = slices
        self.noise = noise
        self.crop_size = crop_size
        self.augment = augment
        self.context_slices = context_slices
        self.neighbours = context_neighbours(slices, context_slices) if context_slices > 1 else None
        self.clean = [hu_to_unit(torch.from_numpy(s.hu)) for s in slices]
        self.simulated: list[list[np.ndarray]] = []
        if noise.uses_physics:
            log.info("simulating %d low-dose realisations of %d slices", noise.realisations, len(slices))
            self.simulated = [
                [simulate_slice(s, noise, np.random.default_rng([seed, index, r]), self._scan_rng(seed, s, index, r))
                 for r in range(noise.realisations)]
                for index, s in enumerate(slices)
            ]

    def _scan_rng(self, seed: int, ct_slice: CTSlice, index: int, realisation: int) -> np.random.Generator | None:
        """For a 2.5-D sampler, the generator of realisation ``realisation``'s dose, kernel and bowtie, shared by the
        slices of one series (a slice of no known series has its own); None for a 2-D one (drawn as before)."""
        if self.neighbours is None:
            return None
        scan = ct_slice.series if ct_slice.series is not None else f"slice {index}"
        return np.random.default_rng([seed, *scan.encode("utf-8"), realisation, 2])

    def batch(self, size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """``size`` random pairs as (noisy, clean) float32 tensors of shapes (size, S, crop, crop) and
        (size, 1, crop, crop)."""
        pairs = [self._pair(rng) for _ in range(size)]
        noisy = torch.stack([p[0] for p in pairs])
        if self.neighbours is None:
            noisy = noisy.unsqueeze(1)
        clean = torch.stack([p[1] for p in pairs]).unsqueeze(1)
        return noisy.float(), clean.float()

    def _pair(self, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        index = int(rng.integers(len(self.slices)))
        rows, cols = self.slices[index].hu.shape
        top = int(rng.integers(rows - self.crop_size + 1))
        left = int(rng.integers(cols - self.crop_size + 1))
        window = (slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        clean = self.clean[index][window]
        if self.neighbours is None:
            noisy_hu = None
            if self.simulated:
                noisy_hu = self.simulated[index][int(rng.integers(len(self.simulated[index])))][window]
            noisy = noisy_unit(clean, noisy_hu, self.noise, rng)
        else:
            noisy = self._noisy_stack(self.neighbours[index], window, rng)
        if self.augment.dihedral:
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            noisy, clean = (dihedral(t, turns, flip) for t in (noisy, clean))
        return noisy, clean

    def _noisy_stack(self, stack: tuple[int, ...], window: tuple[slice, slice], rng: np.random.Generator) -> Tensor:
        """The (S, crop, crop) noisy input of the slices ``stack`` (positions in :attr:`slices`) in ``window``. A slice
        standing in for a missing neighbour is the same noisy crop again, as at inference (replicate padding)."""
        distinct = list(dict.fromkeys(stack))
        noisy_hus: list[np.ndarray | None] = [None] * len(distinct)
        if self.simulated:
            realisation = int(rng.integers(self.noise.realisations))  # one scan: the same r for every slice
            noisy_hus = [self.simulated[j][realisation][window] for j in distinct]
        noisy = noisy_stack([self.clean[j][window] for j in distinct], noisy_hus, self.noise, rng)
        return noisy[[distinct.index(j) for j in stack]]


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
