"""The ONNX Runtime backend (CPU): the prepared fp32 network exported to ONNX in memory and run by ORT.

On the 2-core CPU measured here ONNX Runtime ran the same fp32 model faster than PyTorch's own CPU
kernels, within a hundredth of a HU of the PyTorch result (README, "Performance"). It is optional:
install it with ``pip install "ctdenoise[onnx]"`` (onnxruntime, and onnx for PyTorch's exporter).

The ONNX graph is produced here, from the weights already loaded from safetensors, and never read
from or written to disk: no user-supplied file is ever deserialised. ONNX Runtime's telemetry is turned
off before it is imported (it would otherwise write a device id and an event database under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime``): a hospital tool writes nothing outside its output.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ctdenoise.errors import ConfigError

NAME = "onnxruntime"
ONNX_OPSET = 17
INSTALL_HINT = 'pip install "ctdenoise[onnx]" (onnxruntime and onnx)'
NEEDS = f"the CPU, fp32, and the onnxruntime and onnx packages: {INSTALL_HINT}"
#: The packages the backend needs: ONNX Runtime, and onnx for PyTorch's exporter.
REQUIRED_PACKAGES = ("onnx", "onnxruntime")


def onnxruntime_installed() -> bool:
    """Whether every one of :data:`REQUIRED_PACKAGES` is importable (found, not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in REQUIRED_PACKAGES)


def is_available(device: torch.device) -> bool:
    """Whether ``device`` is the CPU and the packages are installed (:func:`onnxruntime_installed`)."""
    return device.type == "cpu" and onnxruntime_installed()


def wrap(forward: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The network ``forward`` (an ``nn.Module``) run by ONNX Runtime (:class:`OnnxRuntimeForward`)."""
    if not isinstance(forward, nn.Module):
        raise TypeError("the onnxruntime backend exports a network (nn.Module), not a wrapped forward")
    return OnnxRuntimeForward(forward)


#: Set before ONNX Runtime is imported: its telemetry starts at import time (device id, event database).
TELEMETRY_OFF = {"ORT_DISABLE_TELEMETRY": "1"}


def _import_onnxruntime() -> Any:
    """The onnxruntime module, imported with its telemetry off (:data:`TELEMETRY_OFF`, then
    ``disable_telemetry_events``); ConfigError naming the missing package when it cannot be."""
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)
    try:
        modules = {name: importlib.import_module(name) for name in REQUIRED_PACKAGES}
    except ImportError as error:
        raise ConfigError("backend", f"the onnxruntime backend needs the {error.name} package: {INSTALL_HINT}") from None
    ort = modules["onnxruntime"]
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    return ort


class OnnxRuntimeForward:
    """Runs an fp32 CPU ``model`` with ONNX Runtime, one exported graph and session per input shape.

    The first call with a shape traces ``model`` at that shape into ONNX (in memory, a few seconds for
    the RN50 denoiser) and opens an ORT session using ``threads`` intra-op threads (default: torch's
    thread count); later calls with that shape only run the session. Shape-dependent control flow in the
    model (the reflection padding to a multiple of 32) is fixed per shape, which is why shapes are not
    made dynamic; callers pad batches to one size to keep a single session.
    """

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        self._ort = _import_onnxruntime()
        self.model = model
        self.threads = threads or torch.get_num_threads()
        self._sessions: dict[tuple[int, ...], Any] = {}

    def __call__(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        if shape not in self._sessions:
            self._sessions[shape] = self._open_session(shape)
        image = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        (denoised,) = self._sessions[shape].run(None, {"image": image})
        return torch.from_numpy(denoised)

    def _open_session(self, shape: tuple[int, ...]) -> Any:
        graph = io.BytesIO()
        # traced outside inference mode (tracing records operations) on a fresh example of the shape
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the shape-dependent padding loop
            torch.onnx.export(
                self.model, (torch.zeros(shape),), graph,  # type: ignore[arg-type]  # a file object works; the stubs say path
                input_names=["image"], output_names=["denoised"],
                opset_version=ONNX_OPSET, dynamo=False,
            )
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return self._ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
