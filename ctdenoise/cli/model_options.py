"""The model, inference and file I/O options shared by every subcommand that denoises (``denoise``, ``serve``).

Defining them imports neither torch nor the model (the choices come from :mod:`ctdenoise.runtime.options`),
so ``--help`` and ``ctdenoise serve --status`` start at once; :func:`inference_settings` and
:func:`check_model` import what they need when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctdenoise.registry import DEFAULT_MODEL_NAME
from ctdenoise.runtime.options import (
    AUTO_STRENGTH,
    BACKEND_CHOICES,
    DEFAULT_STRENGTH,
    DEVICE_CHOICES,
    PRECISION_CHOICES,
)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The model, inference and file I/O options (``--model`` ... ``--strength``, ``--io-workers``), shared by
    every subcommand that denoises; :func:`inference_settings` turns the model's into InferenceSettings."""
    p.add_argument("--model", default=DEFAULT_MODEL_NAME, help="shipped model name or checkpoint folder (default: %(default)s)")
    p.add_argument("--clip-weights", type=Path, default=None, metavar="FILE",
                   help="CLIP weight file (OpenAI RN50.pt or open_clip state dict) for models that do not carry their encoder")
    p.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto = fp16 on GPU, fp32 on CPU; fp32 forces full precision (docs: Performance)")
    p.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (default: 2 on CPU, 16 on GPU)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile: a one-off compilation (seconds to a minute), "
                   "then faster batches; worth it for long runs")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="GPU only: capture the forward pass as a CUDA graph once and replay it for every batch")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="auto (default): ONNX Runtime for fp32 runs on the CPU when it is installed "
                   "(pip install 'ctdenoise[onnx]'; faster than torch on the CPUs measured), torch otherwise; "
                   "torch or onnxruntime force one")
    p.add_argument("--strength", type=strength_value, default=DEFAULT_STRENGTH, metavar="S",
                   help="0..1: how much of the model's change to apply, a linear blend in HU "
                   "(0 = input unchanged, 1 = model output; default: %(default)s); 'auto': each series' "
                   "strength from its estimated noise, by the model's strength table")
    p.add_argument("--io-workers", type=positive_int, default=None, metavar="N",
                   help="processes that decode and encode a DICOM series' files, overlapped with the model "
                   "(default: one per available core; 1: in the main process)")


def positive_int(text: str) -> int:
    """An integer of at least 1 (argparse turns the error into a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def strength_value(text: str) -> float | str:
    """``--strength``: a number from 0 to 1 or ``auto`` (argparse turns the error into a usage error, exit 2)."""
    if text == AUTO_STRENGTH:
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; use a value from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1 (0 = input unchanged, 1 = model output)")
    return value


def check_model(args: argparse.Namespace) -> Path:
    """The model folder ``--model`` names, checked without loading it (its files are regular and bounded, its
    config a ctdenoise checkpoint's: :func:`ctdenoise.registry.check_model_folder`), so a bad model is a usage
    error before any input is looked at."""
    from ctdenoise.registry import check_model_folder

    return check_model_folder(args.model)


def inference_settings(args: argparse.Namespace):
    """The :class:`ctdenoise.runtime.settings.InferenceSettings` of the options :func:`add_model_options` added
    (imports torch)."""
    from ctdenoise.registry import resolve_model_dir
    from ctdenoise.runtime.settings import InferenceSettings
    from ctdenoise.strength_table import strength_setting

    return InferenceSettings(
        device=args.device, precision=args.precision, batch_size=args.batch_size, compile=args.compile,
        cuda_graphs=args.cuda_graphs, backend=args.backend,
        strength=strength_setting(args.strength, resolve_model_dir(args.model) if args.strength == AUTO_STRENGTH else None),
    )
