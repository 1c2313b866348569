"""Hounsfield-unit windows and the invertible HU <-> model-range mapping.

The model works on ``(HU - HU_MIN) / (HU_MAX - HU_MIN)`` with HU clipped to ``[HU_MIN, HU_MAX]``
= ``[-1024, 3072]`` (the CLIPDenoising code's CT convention; docs/model.md). No CLIP mean/std
normalisation is applied. The mapping is affine, so the inverse is exact for values inside the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

HU_MIN: float = -1024.0
HU_MAX: float = 3072.0
HU_SPAN: float = HU_MAX - HU_MIN

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def hu_to_unit(hu: ArrayT, clip: bool = True) -> ArrayT:
    """Map HU to the model range [0, 1]; values outside [-1024, 3072] HU are clipped when ``clip``.

    Works on numpy arrays and torch tensors alike and keeps the input's type and dtype.
    """
    unit = (hu - HU_MIN) / HU_SPAN
    if clip:
        unit = unit.clip(0.0, 1.0)
    return unit


def unit_to_hu(unit: ArrayT) -> ArrayT:
    """Inverse of :func:`hu_to_unit` (exact for HU inside [-1024, 3072])."""
    return unit * HU_SPAN + HU_MIN


@dataclass(frozen=True)
class Window:
    """A display window: ``center`` (level) and ``width`` in HU."""

    center: float
    width: float

    @property
    def lower(self) -> float:
        return self.center - self.width / 2.0

    @property
    def upper(self) -> float:
        return self.center + self.width / 2.0

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """Return ``hu`` mapped linearly to [0, 1] over the window, clipped outside it (float32)."""
        return np.clip((np.asarray(hu, dtype=np.float32) - self.lower) / self.width, 0.0, 1.0)


#: Common CT windows (center/width in HU).
WINDOWS: dict[str, Window] = {
    "abdomen": Window(50.0, 400.0),
    "soft_tissue": Window(40.0, 400.0),
    "chest": Window(-600.0, 1500.0),
    "lung": Window(-600.0, 1500.0),
    "mediastinum": Window(50.0, 350.0),
    "head": Window(40.0, 80.0),
    "brain": Window(40.0, 80.0),
    "bone": Window(400.0, 1800.0),
}


def get_window(name: str) -> Window:
    """Return the named window from :data:`WINDOWS`; raises ``KeyError`` listing the known names."""
    try:
        return WINDOWS[name]
    except KeyError:
        raise KeyError(f"unknown window {name!r}; known: {', '.join(sorted(WINDOWS))}") from None
