"""The compile backend: ``torch.compile`` (Inductor, with weight freezing) of the prepared network.

A one-off compilation per process and input shape (seconds to a minute), then faster batches; callers pad
batches to one fixed size (:func:`ctdenoise.runtime.denoise.denoise_hu` does) so one graph serves every batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NAME = "compile"
NEEDS = "PyTorch 2 with torch.compile (and, on the CPU, a C++ compiler for Inductor)"


def is_available(device: torch.device) -> bool:
    """Whether this torch has ``torch.compile``."""
    return hasattr(torch, "compile")


def wrap(forward: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``forward`` compiled for static shapes with frozen weights."""
    return torch.compile(forward, dynamic=False, options={"freezing": True})
