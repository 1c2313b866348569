"""``ctdenoise info``: versions, devices, shipped models and the default model's card."""

from __future__ import annotations

import argparse
import platform

from ctdenoise.cli import COMMAND_HELP, EXIT_OK
from ctdenoise.errors import ModelError
from ctdenoise.registry import DEFAULT_MODEL_NAME, available_models, model_card


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help=COMMAND_HELP["info"],
        description="Print the versions of ctdenoise and its main libraries, the compute devices, the shipped "
        "models, the default model's strength presets and its card.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    import torch  # the devices need it; the other libraries' versions come from their metadata, unimported

    from ctdenoise import __version__

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    print(f"ctdenoise {__version__}  python {platform.python_version()}  ({platform.platform()})")
    print(f"torch {torch.__version__}  open_clip {installed('open_clip_torch')}  monai {installed('monai')}  "
          f"pydicom {installed('pydicom')}  onnxruntime {installed('onnxruntime')}")
    cuda = torch.cuda.is_available()
    devices = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else "none"
    print(f"CUDA available: {cuda} (devices: {devices}); CPU threads: {torch.get_num_threads()}")
    print(f"shipped models: {', '.join(available_models()) or 'none'}")
    print(default_presets_line())
    try:
        card = model_card(DEFAULT_MODEL_NAME)
    except ModelError as error:
        card = f"(default model: {error})"
    print("\n" + (card or "(the default model has no model card)"))
    return EXIT_OK


def default_presets_line() -> str:
    """The default model's strength presets (``--strength low|medium|high``) as one line, or why there are none."""
    from ctdenoise.registry import resolve_model_dir
    from ctdenoise.strength_presets import PRESETS_FILE, read_presets

    try:
        presets = read_presets(resolve_model_dir(DEFAULT_MODEL_NAME))
    except ModelError as error:
        return f"default model strength presets: none ({error})"
    shown = ", ".join(f"{name} {strength:g}" for name, strength in presets.strengths.items())
    return f"default model strength presets ({PRESETS_FILE}): {shown}"
