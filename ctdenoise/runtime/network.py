"""The inference copy of a trained network: the changes that compute the same function faster or more exactly.

* the frozen encoder's BatchNorm layers are folded into the preceding convolutions
  (:func:`fold_encoder_batchnorm`; exact up to float rounding, the encoder BN is in eval mode at inference);
* the layer that produces the output image runs in fp32 (:class:`FP32Module`) whatever the autocast
  precision, so the image itself is not rounded to a 16-bit float;
* weights use the channels-last memory layout (oneDNN on the CPU and cuDNN tensor cores on the GPU run
  their fastest convolution kernels on it).

The network handed in is never modified (it can still be trained or saved).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ctdenoise.errors import ModelError


def fold_encoder_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of ``model.encoder`` into the convolution before it, in place; return ``model``.

    The CLIP ResNet names each pair ``convN``/``bnN`` (stem and bottlenecks) or ``0``/``1`` (the
    ``downsample`` sequences); each BatchNorm becomes ``nn.Identity`` and its convolution gains the bias
    ``beta - gamma * mean / sqrt(var + eps)``. Only valid while the encoder's BatchNorm is in eval mode
    (always so for a frozen encoder); raises :class:`ModelError` if it is in training mode or if some
    BatchNorm has no convolution partner (an unknown architecture).
    """
    encoder = model.get_submodule("encoder")
    if encoder.training:
        raise ModelError("cannot fold BatchNorm of an encoder in training mode; call model.eval() first")
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.BatchNorm2d):
                continue
            conv_name = "conv" + name[2:] if name.startswith("bn") else str(int(name) - 1) if name.isdigit() else ""
            conv = getattr(parent, conv_name, None)
            if not isinstance(conv, nn.Conv2d):
                raise ModelError(f"encoder BatchNorm {name!r} of {type(parent).__name__} follows no convolution")
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, child))
            setattr(parent, name, nn.Identity())
    return model


class FP32Module(nn.Module):
    """Run the wrapped module in fp32 with autocast off (for the layer that produces the output image)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.module(x.float())


def inference_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A frozen eval-mode copy of ``model`` on ``device`` in channels-last layout; a CLIPDenoiser's (a network
    with an ``encoder`` and a ``decoder.last``) also has its encoder BatchNorm folded and its last layer in fp32.
    Other networks (a baseline, a test stand-in) are copied as they are."""
    fast = copy.deepcopy(model).eval()
    if hasattr(fast, "encoder"):
        fold_encoder_batchnorm(fast)
    decoder = getattr(fast, "decoder", None)
    if decoder is not None and hasattr(decoder, "last"):
        decoder.last = FP32Module(decoder.last)
    fast.requires_grad_(False)
    return fast.to(device).to(memory_format=torch.channels_last)
