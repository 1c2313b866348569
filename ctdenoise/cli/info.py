"""``ctdenoise info``: versions, devices, shipped models and the default model's card."""

from __future__ import annotations

import argparse
import platform

from ctdenoise.cli import EXIT_OK
from ctdenoise.errors import ModelError
from ctdenoise.registry import DEFAULT_MODEL_NAME, available_models, model_card


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="versions, devices, models",
        description="Print the versions of ctdenoise and its main libraries, the compute devices, the shipped "
        "models and the default model's card.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import monai
    import open_clip
    import pydicom
    import torch

    from ctdenoise import __version__

    print(f"ctdenoise {__version__}  python {platform.python_version()}  ({platform.platform()})")
    print(f"torch {torch.__version__}  open_clip {open_clip.__version__}  monai {monai.__version__}  pydicom {pydicom.__version__}")
    cuda = torch.cuda.is_available()
    devices = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else "none"
    print(f"CUDA available: {cuda} (devices: {devices}); CPU threads: {torch.get_num_threads()}")
    print(f"shipped models: {', '.join(available_models()) or 'none'}")
    try:
        card = model_card(DEFAULT_MODEL_NAME)
    except ModelError as error:
        card = f"(default model: {error})"
    print("\n" + (card or "(the default model has no model card)"))
    return EXIT_OK
