"""The eager backend: PyTorch runs the network's own modules, layer by layer, on any device."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NAME = "eager"
NEEDS = "PyTorch (always installed with ctdenoise)"


def is_available(device: torch.device) -> bool:
    """Always: every device torch knows runs eager PyTorch."""
    return True


def wrap(forward: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``forward`` itself."""
    return forward
