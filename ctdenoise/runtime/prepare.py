"""A trained network prepared once for one run: :func:`prepare` is the only way to make a :class:`PreparedModel`.

Preparing copies the network for inference (:func:`ctdenoise.runtime.network.inference_copy`: BatchNorm
folded, fp32 output layer, channels-last), picks the autocast precision
(:func:`ctdenoise.runtime.precision.resolve_precision`) and the engines that run it
(:mod:`ctdenoise.runtime.backends`: eager PyTorch, optionally compiled and/or replayed from CUDA graphs, or
ONNX Runtime), and records what the outputs say about the model: its label (name and weights hash), its
provenance and the folder it was loaded from (where its strength table lies). The settings were checked
when they were made (:class:`~ctdenoise.runtime.settings.InferenceSettings`); preparing checks only what
depends on this machine (a GPU, an installed package). Prepare once per run and reuse the result for every
series: a copy of the RN50 denoiser takes about a second, an ONNX export several.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from ctdenoise.errors import ConfigError
from ctdenoise.registry import load_model, model_description, model_label, resolve_model_dir
from ctdenoise.runtime.backends import compile as compile_backend
from ctdenoise.runtime.backends import cuda_graphs, eager, onnx_runtime
from ctdenoise.runtime.network import inference_copy
from ctdenoise.runtime.precision import precision_name, resolve_precision
from ctdenoise.runtime.settings import DEFAULT_BATCH_SIZE, InferenceSettings

#: The label of a model prepared without one (not loaded from a model folder).
UNLABELLED = "unlabelled"


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``; ``auto`` picks CUDA when available, else the CPU.

    Asking for ``cuda`` on a machine without a usable GPU raises :class:`ConfigError`.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"{name!r} was requested but no CUDA device is available")
    return torch.device(name)


def resolve_backend(settings: InferenceSettings) -> str:
    """The engine ``settings`` runs the model with: ``"torch"`` or ``"onnxruntime"``.

    An explicit backend is kept. ``"auto"`` picks ONNX Runtime when the run is fp32 on the CPU (device
    resolves to the CPU, precision auto or fp32, neither compile nor CUDA graphs) and ONNX Runtime is
    installed, because it was faster there at equal accuracy in every interleaved repeat measured
    (``benchmarks/ort_vs_torch.py``; docs: Performance); PyTorch otherwise."""
    if settings.backend != "auto":
        return settings.backend
    cpu_fp32 = (resolve_device(settings.device).type == "cpu" and settings.precision in ("auto", "fp32")
                and not settings.compile and not settings.cuda_graphs)
    return "onnxruntime" if cpu_fp32 and onnx_runtime.onnxruntime_installed() else "torch"


@dataclass(frozen=True, eq=False)
class PreparedModel:
    """A network prepared by :func:`prepare` for ``settings``: call it on a (B, S, H, W) batch in the model range
    on ``device`` (S: the network's ``context_slices``, 1 for a 2-D model, 3 for the slices below, at and above the
    one denoised); it returns the denoised (B, 1, H, W) batch in float32 on ``device``.

    ``network`` is the inference copy (the original is untouched), ``backend`` the engine that runs
    (``torch`` or ``onnxruntime``, never ``auto``), ``engines`` the backend modules in the order they wrap
    (e.g. ``("eager", "compile")``), ``batch_size`` the slices per forward pass and ``fixed_batch_size`` the
    size every batch must be padded to (compiled, CUDA-graph and ONNX Runtime models; None otherwise).
    ``label`` names the model in outputs (``name@tensors-sha256``), ``model_dir`` is the folder it was
    loaded from (None for a network made in memory) and :attr:`provenance` says what it is.
    """

    network: nn.Module
    settings: InferenceSettings
    device: torch.device
    autocast_dtype: torch.dtype | None
    backend: str
    engines: tuple[str, ...]
    batch_size: int
    fixed_batch_size: int | None
    label: str
    model_dir: Path | None
    forward: Callable[[Tensor], Tensor] = field(repr=False)

    def __call__(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        enabled = self.autocast_dtype is not None
        # no autocast weight cache: each call casts once anyway, and CUDA graph capture needs it off
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=enabled,
                            cache_enabled=False):
            return self.forward(x).float()

    @property
    def provenance(self) -> str:
        """The model as outputs name it (:func:`ctdenoise.registry.model_description`), e.g.
        ``"CLIPDenoising-architecture model default@0e811f2a5ab0 (encoder: random init, trained)"``."""
        return model_description(self.network, self.label)

    def describe(self) -> dict[str, object]:
        """What was applied, for reports and benchmark JSON."""
        return {
            "device": str(self.device),
            "precision": precision_name(self.autocast_dtype),
            "batchnorm_folded": hasattr(self.network, "encoder"),
            "channels_last": True,
            "compiled": compile_backend.NAME in self.engines,
            "cuda_graphs": cuda_graphs.NAME in self.engines,
            "onnxruntime": onnx_runtime.NAME in self.engines,
        }


def engines_for(settings: InferenceSettings, backend: str) -> tuple[ModuleType, ...]:
    """The backend modules that run ``settings`` with ``backend`` (torch|onnxruntime), innermost first."""
    if backend == "onnxruntime":
        return (onnx_runtime,)
    return (eager, *([compile_backend] if settings.compile else []), *([cuda_graphs] if settings.cuda_graphs else []))


def prepare(
    model: nn.Module,
    settings: InferenceSettings = InferenceSettings(),
    *,
    label: str | None = None,
    model_dir: Path | None = None,
) -> PreparedModel:
    """``model`` (a trained network in eval mode) prepared for ``settings``; ``model`` itself is unchanged.

    ``label`` names it in outputs (default: :func:`ctdenoise.registry.model_label` of ``model_dir`` when given,
    else ``"unlabelled"``); ``model_dir`` is the folder it was loaded from (a strength table's home).
    Raises :class:`ConfigError` naming the setting when this machine cannot run ``settings``: no CUDA device
    for ``cuda``/``cuda_graphs``, a backend whose package is missing (saying what to install)."""
    backend = resolve_backend(settings)
    device = torch.device("cpu") if backend == "onnxruntime" else resolve_device(settings.device)
    engines = engines_for(settings, backend)
    for engine in engines:
        if not engine.is_available(device):
            raise ConfigError(engine.NAME if engine is cuda_graphs else "backend",
                              f"the {engine.NAME} backend cannot run on {device} here: it needs {engine.NEEDS}")
    autocast_dtype = resolve_precision(device, settings.precision)
    batch_size = settings.batch_size or DEFAULT_BATCH_SIZE.get(device.type, 4)
    network = inference_copy(model, device)
    forward: Callable[[Tensor], Tensor] = network
    for engine in engines:
        forward = engine.wrap(forward)
    fixed = batch_size if engines != (eager,) else None
    if label is None:
        label = model_label(model_dir) if model_dir is not None else UNLABELLED
    return PreparedModel(network, settings, device, autocast_dtype, backend, tuple(e.NAME for e in engines),
                         batch_size, fixed, label, model_dir, forward)


def load_prepared(
    spec: str | Path | None = None,
    settings: InferenceSettings = InferenceSettings(),
    *,
    clip_weights: str | Path | None = None,
) -> PreparedModel:
    """The model named by ``spec`` (a shipped model name, default ``default``, or a checkpoint folder:
    :func:`ctdenoise.registry.resolve_model_dir`) loaded (:func:`ctdenoise.registry.load_model`, ``clip_weights``
    for checkpoints that do not carry their encoder) and prepared for ``settings`` with its label and folder."""
    directory = resolve_model_dir(spec)
    label = model_label(spec)
    return prepare(load_model(directory, clip_weights=clip_weights), settings, label=label, model_dir=directory)
