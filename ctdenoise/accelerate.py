"""Fast inference: a denoiser prepared once for one device and precision.

:func:`prepare_model` returns an :class:`InferenceModel`, a copy of a trained denoiser that computes the
same function faster; the original model is never modified (it can still be trained or saved):

* the frozen encoder's BatchNorm layers are folded into the preceding convolutions
  (:func:`fold_encoder_batchnorm`; exact up to float rounding, the encoder BN is in eval mode at inference);
* weights and activations use the channels-last memory layout (oneDNN on the CPU and cuDNN tensor cores
  on the GPU run their fastest convolution kernels on it);
* fp16 or bf16 autocast (:func:`resolve_precision`: fp16 by default on a GPU, fp32 by default on the
  CPU; bf16 on request, fast on CPUs with native bf16: :func:`cpu_has_native_bf16`). The last
  convolution always runs in fp32 so the output image itself is not rounded to a 16-bit float;
* optionally ``torch.compile`` with Inductor's weight freezing (``compile=True``); batches are then
  padded to one fixed size so the compiled graph is reused for every batch of every series.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ctdenoise.errors import ConfigError, ModelError

#: /proc/cpuinfo flags of CPUs that execute bf16 dot products in hardware.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The instruction-set flags the (first) CPU reports in ``/proc/cpuinfo``; empty where it does not exist."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16) and torch's oneDNN can use it.

    Without such instructions bf16 is emulated and slower than fp32, so ``precision="auto"`` stays fp32.
    """
    flags = cpu_flags() if flags is None else flags
    return bool(flags & NATIVE_BF16_CPU_FLAGS) and torch.backends.mkldnn.is_available()


def fold_encoder_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of ``model.encoder`` into the convolution before it, in place; return ``model``.

    The CLIP ResNet names each pair ``convN``/``bnN`` (stem and bottlenecks) or ``0``/``1`` (the
    ``downsample`` sequences); each BatchNorm becomes ``nn.Identity`` and its convolution gains the bias
    ``beta - gamma * mean / sqrt(var + eps)``. Only valid while the encoder's BatchNorm is in eval mode
    (always so for a frozen encoder); raises :class:`ModelError` if it is in training mode or if some
    BatchNorm has no convolution partner (an unknown architecture).
    """
    encoder = model.encoder
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


#: Autocast dtype of each explicit ``precision`` setting (fp32: no autocast).
PRECISION_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto|fp32|bf16|fp16) on ``device``, or None for plain fp32.

    ``auto`` is fp16 on a CUDA device and fp32 on the CPU. Measured against fp32 on a real 512x512 slice
    (README, "Performance"): fp16 autocast stays within the accuracy budget (mean |dHU| <= 0.5,
    max |dHU| <= 3) and runs on GPU tensor cores as fast as bf16, whose 8-bit mantissa exceeded the max
    budget; on the CPU, fp16 has no native kernels and bf16 misses the max budget, so auto stays fp32 there
    (``bf16`` remains available on CPUs with native bf16: :func:`cpu_has_native_bf16`).
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision not in PRECISION_DTYPES:
        raise ConfigError("precision", f"{precision!r} is not one of auto, {', '.join(PRECISION_DTYPES)}")
    return PRECISION_DTYPES[precision]


class InferenceModel(nn.Module):
    """A denoiser prepared for inference on ``device``: folded BN, channels-last, optional bf16 and compile.

    ``forward`` takes a (B, C, H, W) batch in the model range on ``device`` and returns the denoised batch
    in float32 on ``device``. With ``fixed_batch_size`` set (compiled models), callers should pad batches
    to that size (:func:`ctdenoise.inference.denoise_hu` does) so the compiled graph is reused.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        compiled: bool = False,
        fixed_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.compiled = compiled
        self.fixed_batch_size = fixed_batch_size
        self._forward = torch.compile(model, dynamic=False, options={"freezing": True}) if compiled else model

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        enabled = self.autocast_dtype is not None
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=enabled):
            return self._forward(x).float()

    def describe(self) -> dict[str, object]:
        """What was applied, for reports and benchmark JSON."""
        return {
            "device": str(self.device),
            "precision": next(name for name, dtype in PRECISION_DTYPES.items() if dtype == self.autocast_dtype),
            "batchnorm_folded": True,
            "channels_last": True,
            "compiled": self.compiled,
        }


def prepare_model(
    model: nn.Module,
    device: torch.device | str,
    precision: str = "auto",
    *,
    compile: bool = False,
    batch_size: int | None = None,
) -> InferenceModel:
    """Return a fast inference copy of the denoiser ``model`` on ``device``; ``model`` itself is unchanged.

    ``precision`` is auto|fp32|bf16|fp16 (:func:`resolve_precision`). ``compile`` wraps the copy in
    ``torch.compile`` for inputs of ``batch_size`` slices (required with ``compile``). An already
    prepared :class:`InferenceModel` is returned as it is.
    """
    if isinstance(model, InferenceModel):
        return model
    device = torch.device(device)
    if compile and batch_size is None:
        raise ConfigError("batch_size", "a compiled model needs a fixed batch size")
    fast = copy.deepcopy(model).eval()
    fold_encoder_batchnorm(fast)
    fast.decoder.last = FP32Module(fast.decoder.last)
    fast.requires_grad_(False)
    fast = fast.to(device=device, memory_format=torch.channels_last)
    return InferenceModel(fast, device, resolve_precision(device, precision), compile, batch_size if compile else None)
