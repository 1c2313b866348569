"""Which float precision a prepared model computes in: autocast dtypes by device, and the CPU's bf16 support."""

from __future__ import annotations

from pathlib import Path

import torch

from ctdenoise.errors import ConfigError

#: /proc/cpuinfo flags of CPUs that execute bf16 dot products in hardware.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")

#: Autocast dtype of each explicit ``precision`` setting (fp32: no autocast).
PRECISION_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def precision_name(autocast_dtype: torch.dtype | None) -> str:
    """The explicit precision setting (fp32|bf16|fp16) of an autocast dtype from :func:`resolve_precision`."""
    return next(name for name, dtype in PRECISION_DTYPES.items() if dtype == autocast_dtype)
