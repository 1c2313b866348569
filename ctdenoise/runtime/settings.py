"""How to run a model: :class:`InferenceSettings`, checked once when they are made, and the strength of a series.

Importable without torch (the front door ``ctdenoise.InferenceSettings`` stays light); what depends on the
machine (is there a GPU, is ONNX Runtime installed) is checked by :func:`ctdenoise.runtime.prepare.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ctdenoise.errors import ConfigError, InputError
from ctdenoise.noise_estimate import noise_hu_local_std_mode
from ctdenoise.runtime.options import BACKEND_CHOICES, DEFAULT_STRENGTH, DEVICE_CHOICES, PRECISION_CHOICES
from ctdenoise.strength_table import StrengthTable

#: Slices per forward pass when the caller does not choose: small on the CPU (activations of a
#: 512x512 slice take ~0.4 GB in fp32), large on a GPU where throughput grows with the batch.
DEFAULT_BATCH_SIZE = {"cpu": 2, "cuda": 16}


@dataclass(frozen=True)
class InferenceSettings:
    """How to run the model: ``device`` (auto|cpu|cuda[:N]), ``precision`` (auto|fp32|bf16|fp16),
    ``batch_size``, ``compile``, ``cuda_graphs``, ``backend`` (auto|torch|onnxruntime), ``strength`` (0..1).

    ``precision="auto"`` means fp16 autocast on a CUDA device and fp32 on the CPU
    (:func:`ctdenoise.runtime.precision.resolve_precision` says why); ``"fp32"`` forces full precision everywhere.
    ``batch_size=None`` picks :data:`DEFAULT_BATCH_SIZE` for the device type. ``compile`` runs the model
    through ``torch.compile`` (a one-off compilation per process, then every batch reuses it);
    ``cuda_graphs`` (CUDA devices only) captures the forward pass once and replays it for every batch;
    ``backend="onnxruntime"`` runs the model in fp32 on the CPU with ONNX Runtime (the optional extra
    ``ctdenoise[onnx]``), whatever ``device="auto"`` would pick; ``"auto"`` (default) takes ONNX Runtime where
    the run is fp32 on the CPU and it is installed, PyTorch otherwise
    (:func:`ctdenoise.runtime.prepare.resolve_backend`). ``strength`` blends the model's output with its input
    in HU (:func:`ctdenoise.runtime.denoise.blend_strength`; 0 = input unchanged, 1 = model output), or is a
    :class:`~ctdenoise.strength_table.StrengthTable` (strength "auto"): each series' strength is then read from
    the table at the series' estimated noise (:func:`resolve_strength`).

    Every value and every combination that cannot work on any machine is refused here, with
    :class:`ConfigError` naming the setting; the settings are not checked again later.
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

    def same_run(self, other: InferenceSettings) -> bool:
        """True when ``other`` runs the model the same way (device, precision, batch size, compile, CUDA graphs,
        backend): the two differ at most in strength."""
        return replace(self, strength=DEFAULT_STRENGTH) == replace(other, strength=DEFAULT_STRENGTH)

    @property
    def resolved_strength(self) -> float:
        """``strength`` as the number it is once :func:`resolve_strength` has resolved a strength table for a
        series; ValueError while it is still a table."""
        strength = self.strength
        if isinstance(strength, StrengthTable):
            raise ValueError("strength 'auto' has no number until resolve_strength picks one for a series")
        return strength


def resolve_strength(
    settings: InferenceSettings, hu: np.ndarray, noise_hu: float | None = None
) -> InferenceSettings:
    """``settings`` with a numeric strength for the series ``hu`` (slices, rows, cols): unchanged when its
    strength is a number; for a strength table, the table's strength at the series' estimated noise
    (``noise_hu`` when the caller already has :func:`~ctdenoise.noise_estimate.noise_hu_local_std_mode` of ``hu``,
    else estimated here). A series whose noise cannot be estimated (too little soft tissue) raises
    :class:`InputError` asking for a numeric strength."""
    table = settings.strength
    if not isinstance(table, StrengthTable):
        return settings
    noise = noise_hu_local_std_mode(hu) if noise_hu is None else noise_hu
    if noise is None:
        raise InputError(None, "strength 'auto': the noise of this series cannot be estimated (too little soft "
                         "tissue, or slices smaller than 16x16); give a numeric strength from 0 to 1")
    return replace(settings, strength=round(table.strength_for(noise), 3))
