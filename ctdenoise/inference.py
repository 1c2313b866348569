"""Slice-by-slice denoising of HU volumes: batching, device and precision, bounded memory.

The model sees one axial slice at a time in the model range (:func:`ctdenoise.intensity.hu_to_unit`);
:func:`denoise_hu` returns HU in the input's shape and geometry. Host memory beyond the input and the
output array is bounded by one batch of slices (inputs, activations and outputs), whatever the number
of slices: a 512x512x600 series is processed in ``ceil(600 / batch_size)`` independent steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from ctdenoise.accelerate import InferenceModel, prepare_model
from ctdenoise.errors import ConfigError, InputError
from ctdenoise.inference_options import BACKEND_CHOICES, DEFAULT_STRENGTH, DEVICE_CHOICES, PRECISION_CHOICES
from ctdenoise.noise_estimate import estimate_noise_hu
from ctdenoise.onnx_runtime import onnxruntime_installed
from ctdenoise.strength_table import StrengthTable
from ctdenoise.transfer import BatchTransfer
from ctdenoise.intensity import hu_to_unit, unit_to_hu

if TYPE_CHECKING:
    from ctdenoise.io import Volume

#: Slices per forward pass when the caller does not choose: small on the CPU (activations of a
#: 512x512 slice take ~0.4 GB in fp32), large on a GPU where throughput grows with the batch.
DEFAULT_BATCH_SIZE = {"cpu": 2, "cuda": 16}


@dataclass(frozen=True)
class InferenceSettings:
    """How to run the model: ``device`` (auto|cpu|cuda[:N]), ``precision`` (auto|fp32|bf16|fp16),
    ``batch_size``, ``compile``, ``cuda_graphs``, ``backend`` (auto|torch|onnxruntime), ``strength`` (0..1).

    ``precision="auto"`` means fp16 autocast on a CUDA device and fp32 on the CPU
    (:func:`ctdenoise.accelerate.resolve_precision` says why); ``"fp32"`` forces full precision everywhere.
    ``batch_size=None`` picks :data:`DEFAULT_BATCH_SIZE` for the device type. ``compile`` runs the model
    through ``torch.compile`` (a one-off compilation per process, then every batch reuses it);
    ``cuda_graphs`` (CUDA devices only) captures the forward pass once and replays it for every batch;
    ``backend="onnxruntime"`` runs the model in fp32 on the CPU with ONNX Runtime (the optional extra
    ``ctdenoise[onnx]``), whatever ``device="auto"`` would pick; ``"auto"`` (default) takes ONNX Runtime where
    the run is fp32 on the CPU and it is installed, PyTorch otherwise (:func:`resolve_backend`). ``strength`` blends the model's output
    with its input in HU (:func:`blend_strength`; 0 = input unchanged, 1 = model output), or is a
    :class:`~ctdenoise.strength_table.StrengthTable` (strength "auto"): each series' strength is then read from
    the table at the series' estimated noise (:func:`resolve_strength`).
    """

    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    compile: bool = False
    cuda_graphs: bool = False
    backend: str = "auto"
    strength: float | StrengthTable = DEFAULT_STRENGTH

    def __post_init__(self) -> None:
        if not isinstance(self.strength, StrengthTable) and (
            not isinstance(self.strength, (int, float)) or not 0.0 <= float(self.strength) <= 1.0
        ):
            raise ConfigError(
                "strength", f"must be a number from 0 to 1 (0 = input unchanged, 1 = model output) or a model's "
                f"strength table (strength 'auto'), got {self.strength!r}"
            )
        if self.device.split(":")[0] not in DEVICE_CHOICES:
            raise ConfigError("device", f"{self.device!r} is not one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
        if self.precision not in PRECISION_CHOICES:
            raise ConfigError("precision", f"{self.precision!r} is not one of {', '.join(PRECISION_CHOICES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("batch_size", f"must be a positive integer, got {self.batch_size}")
        if self.cuda_graphs and self.device == "cpu":
            raise ConfigError("cuda_graphs", "CUDA graphs need a CUDA device; drop --cuda-graphs or use --device cuda")
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError("backend", f"{self.backend!r} is not one of {', '.join(BACKEND_CHOICES)}")
        if self.backend == "onnxruntime" and (
            self.device.startswith("cuda") or self.precision in ("bf16", "fp16") or self.compile or self.cuda_graphs
        ):
            raise ConfigError("backend", "onnxruntime runs fp32 on the CPU only: not with cuda, bf16/fp16, compile or CUDA graphs")


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
    return "onnxruntime" if cpu_fp32 and onnxruntime_installed() else "torch"


def blend_strength(noisy: torch.Tensor, denoised: torch.Tensor, strength: float) -> torch.Tensor:
    """``noisy + strength * (denoised - noisy)`` in HU: exactly ``noisy`` at 0 and exactly ``denoised`` at 1."""
    return torch.lerp(noisy, denoised.to(noisy.dtype), float(strength))


def resolve_strength(
    settings: InferenceSettings, hu: np.ndarray, noise_hu: float | None = None
) -> InferenceSettings:
    """``settings`` with a numeric strength for the series ``hu`` (slices, rows, cols): unchanged when its
    strength is a number; for a strength table, the table's strength at the series' estimated noise
    (``noise_hu`` when the caller already has :func:`~ctdenoise.noise_estimate.estimate_noise_hu` of ``hu``,
    else estimated here). A series whose noise cannot be estimated (too little soft tissue) raises
    :class:`InputError` asking for a numeric strength."""
    table = settings.strength
    if not isinstance(table, StrengthTable):
        return settings
    noise = estimate_noise_hu(hu) if noise_hu is None else noise_hu
    if noise is None:
        raise InputError(None, "strength 'auto': the noise of this series cannot be estimated (too little soft "
                         "tissue, or slices smaller than 16x16); give a numeric strength from 0 to 1")
    return replace(settings, strength=round(table.strength_for(noise), 3))


def denoise_hu(
    model: torch.nn.Module,
    hu: np.ndarray,
    settings: InferenceSettings = InferenceSettings(),
    progress: Callable[[int], None] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Denoise a HU array of shape (slices, rows, cols) or (rows, cols) with ``model``.

    Returns float32 HU of the same shape: ``out`` (a float32 array of that shape) when given, filled in
    slice order, else a new array. The model runs through :func:`ctdenoise.accelerate.prepare_model`
    (a prepared copy; ``model`` itself is unchanged; pass an :class:`~ctdenoise.accelerate.InferenceModel`
    to prepare once for many calls) under ``torch.inference_mode``, so the result is deterministic for a
    given device and precision. ``progress`` (if given) is called with the number of slices finished
    after each batch, once those slices are in the output array (slices ``0 .. total-1`` are then final).
    The output is the blend of input and model output that ``settings.strength`` asks for
    (:func:`blend_strength`; a strength table is applied to the whole array as one series,
    :func:`resolve_strength`); at strength 0 the model is not run and the output equals the input.
    """
    array = np.asarray(hu, dtype=np.float32)
    if array.ndim == 2:
        return denoise_hu(model, array[None], settings, progress, None if out is None else out[None])[0]
    if array.ndim != 3:
        raise ValueError(f"expected a (slices, rows, cols) HU array, got shape {array.shape}")
    if out is not None and (out.shape != array.shape or out.dtype != np.float32):
        raise ValueError(f"out must be a float32 array of shape {array.shape}, got {out.dtype} {out.shape}")
    settings = resolve_strength(settings, array)
    if settings.strength == 0:
        output = np.empty_like(array) if out is None else out
        output[...] = array
        if progress is not None and array.shape[0]:
            progress(array.shape[0])
        return output
    runner = prepare_for_settings(model, settings)
    batch_size = runner.fixed_batch_size or settings.batch_size or DEFAULT_BATCH_SIZE.get(runner.device.type, 4)
    output = np.empty_like(array) if out is None else out
    transfer = BatchTransfer(runner.device, (batch_size, *array.shape[1:]))
    with torch.inference_mode():
        for start in range(0, array.shape[0], batch_size):
            stop = min(start + batch_size, array.shape[0])
            batch = transfer.upload(array[start:stop], pad_to=runner.fixed_batch_size)
            clean = unit_to_hu(runner(hu_to_unit(batch.unsqueeze(1)))).squeeze(1)
            if settings.strength != 1:
                clean = blend_strength(batch, clean, settings.strength)
            finished = transfer.download(clean[: stop - start], output[start:stop])
            if progress is not None and finished:
                progress(finished)
        finished = transfer.flush()
        if progress is not None and finished:
            progress(finished)
    return output


def prepare_for_settings(model: torch.nn.Module, settings: InferenceSettings) -> InferenceModel:
    """``model`` prepared for ``settings`` (device, precision, compile, CUDA graphs, backend as
    :func:`resolve_backend` picks it); an InferenceModel is kept as it is."""
    if isinstance(model, InferenceModel):
        return model
    onnxruntime = resolve_backend(settings) == "onnxruntime"
    device = torch.device("cpu") if onnxruntime else resolve_device(settings.device)
    batch_size = settings.batch_size or DEFAULT_BATCH_SIZE.get(device.type, 4)
    return prepare_model(model, device, settings.precision, compile=settings.compile, batch_size=batch_size,
                         cuda_graphs=settings.cuda_graphs, onnxruntime=onnxruntime)


def denoise_volume(
    model: torch.nn.Module,
    volume: Volume,
    settings: InferenceSettings = InferenceSettings(),
    progress: Callable[[int], None] | None = None,
) -> Volume:
    """Denoise every axial slice of ``volume`` (at ``settings.strength``); the result keeps its geometry and
    DICOM sources."""
    return volume.with_hu(denoise_hu(model, volume.hu, settings, progress))
