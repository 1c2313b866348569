"""The CLIPDenoising paper's training noise: i.i.d. Gaussian noise on the model scale ``(HU + 1024) / 4096``."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from ctdenoise.simulate.checks import check_positive

#: The paper's Gaussian noise level on the (HU + 1024) / 4096 scale (~80 HU).
PAPER_SIGMA: float = 5.0 / 255.0

UnitT = TypeVar("UnitT", np.ndarray, torch.Tensor)


def add_gaussian_noise(
    unit: UnitT,
    sigma: float = PAPER_SIGMA,
    *,
    rng: int | np.random.Generator | torch.Generator | None = None,
) -> UnitT:
    """Add i.i.d. Gaussian noise of std ``sigma`` to an image on the (HU + 1024) / 4096 scale.

    The CLIPDenoising CT protocol (sigma = 5/255, about 80 HU). The result is **not clipped** to
    [0, 1], like the paper's training code: clipping would bias the noise in air and dense bone.
    Returns the input's type, dtype and device. ``rng`` is a seed, or a numpy Generator for arrays /
    a torch Generator for tensors (on the tensor's device); ``None`` draws from a fresh OS seed
    (arrays) or torch's global generator (tensors).
    """
    check_positive("sigma", sigma)
    if isinstance(unit, torch.Tensor):
        if isinstance(rng, int):
            rng = torch.Generator(device=unit.device).manual_seed(rng)
        if rng is not None and not isinstance(rng, torch.Generator):
            raise TypeError(f"a tensor needs an int seed or a torch.Generator, got {type(rng).__name__}")
        dtype = unit.dtype if unit.is_floating_point() else torch.float32
        noise = torch.randn(unit.shape, generator=rng, device=unit.device, dtype=dtype)
        return unit.to(dtype) + sigma * noise
    if isinstance(rng, torch.Generator):
        raise TypeError("a numpy array needs an int seed or a numpy Generator, got a torch.Generator")
    array = np.asarray(unit)
    array_dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.float32
    draws = np.random.default_rng(rng).standard_normal(array.shape)
    return (array + sigma * draws).astype(array_dtype)
