"""Specification of the 2.5-D input (``ModelConfig.context_slices``, issue 24), and of what it must not change.

A model with ``context_slices: 3`` sees the axial slices below, at and above the one it denoises as its input
channels and returns the denoised centre slice; a 2-D model (``context_slices: 1``, every existing model
folder) must keep its outputs, its files and the random stream of its training recipes.
"""

from __future__ import annotations

import numpy as np
import pytest

from ctdenoise.training.config import AugmentConfig, NoiseConfig
from ctdenoise.training.data import CTSlice
from ctdenoise.training.pairs import PairSampler, mixup

# ---------------------------------------------------------------- what a 2-D recipe draws is unchanged

#: (noisy sum, clean sum, noisy[0, 0, 5, 7], clean[-1, 0, 3, 2]) of the first four batches of the recipe in
#: :func:`_two_d_batches`, recorded before the 2.5-D input existed (commit d3ad2e8).
PINNED_2D_BATCHES = [
    (794.146143168211, 794.5966338068247, 0.21588239073753357, 0.28337016701698303),
    (797.5859176516533, 797.5117958709598, 0.32708099484443665, 0.2671269178390503),
    (821.8206034041941, 823.052704282105, 0.2436244785785675, 0.26054906845092773),
    (774.3249086737633, 774.2438767701387, 0.27535223960876465, 0.23048286139965057),
]


def _synthetic_slices(count: int = 3, shape: tuple[int, int] = (48, 40)) -> list[CTSlice]:
    rng = np.random.default_rng(7)
    return [CTSlice((rng.normal(0, 200, shape) + 40 * k).astype(np.float32), (0.8, 0.8), f"s[{k}]")
            for k in range(count)]


MIXED_NOISE = NoiseConfig(kind="mixed", dose_range=(0.1, 0.5), realisations=2, gaussian_share=0.3, clean_share=0.2,
                          sigma_range=(0.01, 0.05))
AUGMENT = AugmentConfig(dihedral=True, mixup_prob=0.5)


def _two_d_batches() -> list[tuple[float, float, float, float]]:
    sampler = PairSampler(_synthetic_slices(), MIXED_NOISE, 32, AUGMENT, seed=3)
    drawn = []
    for iteration in range(4):
        rng = np.random.default_rng([3, 0, iteration])  # as the training loop seeds iteration i
        noisy, clean = mixup(*sampler.batch(3, rng), AUGMENT, rng)
        drawn.append((noisy.double().sum().item(), clean.double().sum().item(),
                      float(noisy[0, 0, 5, 7]), float(clean[-1, 0, 3, 2])))
    return drawn


def test_a_2d_recipe_draws_exactly_the_batches_it_drew_before_the_25d_input() -> None:
    assert _two_d_batches() == [pytest.approx(batch, rel=1e-6) for batch in PINNED_2D_BATCHES]
