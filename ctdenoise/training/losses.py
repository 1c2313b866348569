"""The training objective named by :attr:`ctdenoise.training.config.OptimConfig.loss`."""

from __future__ import annotations

import torch
from torch import Tensor

from ctdenoise.training.config import OptimConfig


def _finite_differences(image: Tensor) -> tuple[Tensor, Tensor]:
    """Vertical and horizontal forward differences of a (B, C, H, W) batch."""
    return image[..., 1:, :] - image[..., :-1, :], image[..., :, 1:] - image[..., :, :-1]


def training_loss(output: Tensor, target: Tensor, optim: OptimConfig) -> Tensor:
    """``l1``: mean absolute error. ``l1+gradient``: that plus ``optim.gradient_weight`` times the mean absolute
    error of the finite differences in both directions (Mathieu et al. 2016, "gradient difference loss"), which
    charges a smoothed edge or flattened texture even where the pixel values are close on average."""
    loss = torch.nn.functional.l1_loss(output, target)
    if optim.loss == "l1+gradient":
        for out_diff, target_diff in zip(_finite_differences(output), _finite_differences(target)):
            loss = loss + optim.gradient_weight * torch.nn.functional.l1_loss(out_diff, target_diff)
    return loss
