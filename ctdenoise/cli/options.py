"""The command-line options that more than one command declares, each declared here once.

Every subcommand, script and benchmark that takes a model, a device or a batch size adds it with these
functions, in the same argument groups (``model``, ``inference``, ``input/output``), so a flag is spelt,
typed, checked and explained in one place. Defining them imports neither torch nor the model (the choices
come from :mod:`ctdenoise.runtime.options`), so ``--help`` and ``ctdenoise serve --status`` start at once;
:func:`inference_settings` and :func:`check_model` import what they need when a command runs.

* :func:`add_model_options`: the whole set of a command that denoises (``denoise``, ``serve``, ``iq``).
* :func:`add_model_option`, :func:`add_device_option`, :func:`add_batch_size_option`: one option each, for
  commands that take only some of them (``evaluate``, ``strength fit``, the benchmarks), with their own
  default or help where their meaning differs (a benchmark's ``--model auto``).
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
    STRENGTH_PRESETS,
)

#: What an argument group or a parser is to the functions below: anything ``add_argument`` can be called on.
Options = argparse.ArgumentParser | argparse._ArgumentGroup

MODEL_HELP = "shipped model name or checkpoint folder (default: %(default)s)"
DEVICE_HELP = f"{'|'.join(DEVICE_CHOICES)} or cuda:N (default: %(default)s)"
BATCH_SIZE_HELP = "slices per forward pass (default: 2 on CPU, 16 on GPU)"


def model_group(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``model`` argument group of ``parser`` (made on first use): which network runs, and how strongly."""
    return _group(parser, "model")


def inference_group(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``inference`` argument group of ``parser`` (made on first use): where and how the network runs."""
    return _group(parser, "inference")


def io_group(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``input/output`` argument group of ``parser`` (made on first use): how files are read and written."""
    return _group(parser, "input/output")


def _group(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_model_option(options: Options, *, default: str | None = DEFAULT_MODEL_NAME, help: str = MODEL_HELP,
                     metavar: str | None = None) -> None:
    """``--model``: a shipped model name or a checkpoint folder (``default`` and ``help`` for a command whose
    ``--model`` also takes other words, e.g. a benchmark's ``auto``/``random`` or evaluate's ``none``)."""
    options.add_argument("--model", default=default, metavar=metavar, help=help)


def add_device_option(options: Options, *, default: str = "auto", help: str = DEVICE_HELP) -> None:
    """``--device``: auto, cpu, cuda or cuda:N."""
    options.add_argument("--device", default=default, help=help)


def add_batch_size_option(options: Options, *, help: str = BATCH_SIZE_HELP) -> None:
    """``--batch-size``: slices per forward pass (None: the device's default; the settings refuse one below 1)."""
    options.add_argument("--batch-size", type=int, default=None, help=help)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options of every subcommand that denoises, in the ``model`` (``--model``, ``--clip-weights``,
    ``--strength``), ``inference`` (``--device`` ... ``--backend``) and ``input/output`` (``--io-workers``)
    groups; :func:`inference_settings` turns them into InferenceSettings."""
    model = model_group(parser)
    add_model_option(model)
    model.add_argument("--clip-weights", type=Path, default=None, metavar="FILE",
                       help="CLIP weight file (OpenAI RN50.pt or open_clip state dict) for models that do not carry their encoder")
    model.add_argument("--strength", type=strength_value, default=DEFAULT_STRENGTH, metavar="S",
                       help="0..1: how much of the model's change to apply, a linear blend in HU "
                       "(0 = input unchanged, 1 = model output; default: %(default)s); 'auto': each series' "
                       "strength from its estimated noise, by the model's strength table; "
                       f"{'|'.join(STRENGTH_PRESETS)}: the strength that removes 30/50/70 %% of the noise of the "
                       "image-quality phantom at quarter dose, from the model folder's presets.json")
    add_inference_options(inference_group(parser))
    add_io_workers_option(io_group(parser))


def add_inference_options(options: Options) -> None:
    """Where and how the network runs: ``--device``, ``--precision``, ``--batch-size``, ``--compile``,
    ``--cuda-graphs``, ``--backend``."""
    add_device_option(options)
    options.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                         help="auto = fp16 on GPU, fp32 on CPU; fp32 forces full precision (docs: Performance)")
    add_batch_size_option(options)
    options.add_argument("--compile", action="store_true",
                         help="run the model through torch.compile: a one-off compilation (seconds to a minute), "
                         "then faster batches; worth it for long runs")
    options.add_argument("--cuda-graphs", action="store_true",
                         help="GPU only: capture the forward pass as a CUDA graph once and replay it for every batch")
    options.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                         help="auto (default): ONNX Runtime for fp32 runs on the CPU when it is installed "
                         "(pip install 'ctdenoise[onnx]'; faster than torch on the CPUs measured), torch otherwise; "
                         "torch or onnxruntime force one")


def add_io_workers_option(options: Options) -> None:
    """``--io-workers``: the processes that decode and encode a DICOM series' files."""
    options.add_argument("--io-workers", type=positive_int, default=None, metavar="N",
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
    """``--strength``: a number from 0 to 1, ``auto`` or a preset name (``low``, ``medium``, ``high``; argparse
    turns the error into a usage error, exit 2)."""
    if text == AUTO_STRENGTH or text in STRENGTH_PRESETS:
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; use a value from 0 to 1, {AUTO_STRENGTH} or a preset "
            f"({', '.join(STRENGTH_PRESETS)})") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1 (0 = input unchanged, 1 = model output)")
    return value


def check_model(args: argparse.Namespace) -> Path:
    """The model folder ``--model`` names, checked without loading it (its files are regular and bounded, its
    config a ctdenoise checkpoint's: :func:`ctdenoise.registry.check_model_folder`), so a bad model is a usage
    error before any input is looked at."""
    from ctdenoise.registry import check_model_folder

    return check_model_folder(args.model)


def engine_settings(args: argparse.Namespace):
    """The :class:`ctdenoise.runtime.settings.InferenceSettings` of the options :func:`add_inference_options` added,
    at the default strength: for commands that choose their strengths themselves (``iq``, ``strength presets``;
    imports torch)."""
    from ctdenoise.runtime.settings import InferenceSettings

    return InferenceSettings(device=args.device, precision=args.precision, batch_size=args.batch_size,
                             compile=args.compile, cuda_graphs=args.cuda_graphs, backend=args.backend)


def inference_settings(args: argparse.Namespace):
    """The :class:`ctdenoise.runtime.settings.InferenceSettings` of the options :func:`add_model_options` added:
    :func:`engine_settings` with ``--strength`` resolved (imports torch)."""
    from dataclasses import replace

    from ctdenoise.registry import resolve_model_dir
    from ctdenoise.strength_table import strength_setting

    model_dir = resolve_model_dir(args.model) if isinstance(args.strength, str) else None
    return replace(engine_settings(args), strength=strength_setting(args.strength, model_dir))
