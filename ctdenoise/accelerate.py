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
  padded to one fixed size so the compiled graph is reused for every batch of every series;
* optionally, on a CUDA device, CUDA graphs (``cuda_graphs=True``): the forward pass is captured once
  per input shape and replayed, so the GPU runs it without one kernel launch per layer from Python;
  batches are padded to one fixed size as for ``compile``.
* optionally, on the CPU in fp32, ONNX Runtime instead of PyTorch's kernels (``onnxruntime=True``:
  :class:`ctdenoise.onnx_runtime.OnnxRuntimeForward`); batches are padded to one fixed size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ctdenoise.errors import ConfigError, ModelError
from ctdenoise.onnx_runtime import OnnxRuntimeForward

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


class CUDAGraphForward:
    """Runs ``forward`` by replaying a CUDA graph captured on the first call with each input shape.

    The first call with a shape runs ``forward`` three times on a side stream (cuDNN picks its kernels),
    then captures one call into a graph with static input and output buffers; every call copies its
    input into the static buffer, replays the graph and returns a copy of the static output (so results
    of earlier calls stay valid). Callers keep the number of shapes small by padding batches.
    """

    WARMUP_CALLS = 3

    def __init__(self, forward: Callable[[Tensor], Tensor]) -> None:
        self.forward = forward
        self._graphs: dict[tuple[tuple[int, ...], torch.dtype], tuple[Tensor, torch.cuda.CUDAGraph, Tensor]] = {}

    def __call__(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        static_input, graph, static_output = self._graphs[key]
        static_input.copy_(x)
        graph.replay()
        return static_output.clone()

    def _capture(self, x: Tensor) -> tuple[Tensor, torch.cuda.CUDAGraph, Tensor]:
        static_input = x.clone(memory_format=torch.channels_last)
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_CALLS):
                self.forward(static_input)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.forward(static_input)
        return static_input, graph, static_output


class InferenceModel(nn.Module):
    """A denoiser prepared for inference on ``device``: folded BN, channels-last, optional bf16/fp16,
    compile, CUDA graphs or ONNX Runtime.

    ``forward`` takes a (B, C, H, W) batch in the model range on ``device`` and returns the denoised batch
    in float32 on ``device``. With ``fixed_batch_size`` set (compiled models), callers should pad batches
    to that size (:func:`ctdenoise.inference.denoise_hu` does) so the compiled or captured graph is reused.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        compiled: bool = False,
        fixed_batch_size: int | None = None,
        cuda_graphs: bool = False,
        onnxruntime: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.compiled = compiled
        self.cuda_graphs = cuda_graphs
        self.onnxruntime = onnxruntime
        self.fixed_batch_size = fixed_batch_size
        forward: Callable[[Tensor], Tensor] = model
        if onnxruntime:
            forward = OnnxRuntimeForward(model)
        elif compiled:
            forward = torch.compile(model, dynamic=False, options={"freezing": True})
        self._forward = CUDAGraphForward(forward) if cuda_graphs else forward

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        enabled = self.autocast_dtype is not None
        # no autocast weight cache: each call casts once anyway, and CUDA graph capture needs it off
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=enabled,
                            cache_enabled=False):
            return self._forward(x).float()

    def describe(self) -> dict[str, object]:
        """What was applied, for reports and benchmark JSON."""
        return {
            "device": str(self.device),
            "precision": next(name for name, dtype in PRECISION_DTYPES.items() if dtype == self.autocast_dtype),
            "batchnorm_folded": True,
            "channels_last": True,
            "compiled": self.compiled,
            "cuda_graphs": self.cuda_graphs,
            "onnxruntime": self.onnxruntime,
        }


def prepare_model(
    model: nn.Module,
    device: torch.device | str,
    precision: str = "auto",
    *,
    compile: bool = False,
    batch_size: int | None = None,
    cuda_graphs: bool = False,
    onnxruntime: bool = False,
) -> InferenceModel:
    """Return a fast inference copy of the denoiser ``model`` on ``device``; ``model`` itself is unchanged.

    ``precision`` is auto|fp32|bf16|fp16 (:func:`resolve_precision`). ``compile`` wraps the copy in
    ``torch.compile``, ``cuda_graphs`` (CUDA devices only) replays captured CUDA graphs
    (:class:`CUDAGraphForward`) and ``onnxruntime`` (CPU, fp32, not with the other two) runs the copy
    with ONNX Runtime (:class:`~ctdenoise.onnx_runtime.OnnxRuntimeForward`), all for inputs of
    ``batch_size`` slices (required with any of them). An already prepared :class:`InferenceModel` is
    returned as it is.
    """
    if isinstance(model, InferenceModel):
        return model
    device = torch.device(device)
    if (compile or cuda_graphs or onnxruntime) and batch_size is None:
        raise ConfigError("batch_size", "a compiled, CUDA-graph or ONNX Runtime model needs a fixed batch size")
    if cuda_graphs and device.type != "cuda":
        raise ConfigError("cuda_graphs", f"CUDA graphs need a CUDA device, not {device}")
    autocast_dtype = resolve_precision(device, precision)
    if onnxruntime and (device.type != "cpu" or autocast_dtype is not None or compile or cuda_graphs):
        raise ConfigError("backend", "the onnxruntime backend runs fp32 on the CPU only, without compile or CUDA graphs")
    fast = copy.deepcopy(model).eval()
    fold_encoder_batchnorm(fast)
    fast.decoder.last = FP32Module(fast.decoder.last)
    fast.requires_grad_(False)
    fast = fast.to(device=device, memory_format=torch.channels_last)
    fixed_batch_size = batch_size if compile or cuda_graphs or onnxruntime else None
    return InferenceModel(fast, device, autocast_dtype, compile, fixed_batch_size, cuda_graphs, onnxruntime)
