"""``ctdenoise export SOURCE TARGET``: a trained model folder exported for shipping (every tensor in float16)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP, EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help=COMMAND_HELP["export"],
        description="Write a float16 copy of the model folder SOURCE (written by 'ctdenoise train': its model/ or "
        "best_model/) into TARGET: model.safetensors and config.json, the training summary kept "
        "(ctdenoise.model.export_half). Other files in TARGET (a MODEL_CARD.md) are left alone.",
    )
    p.add_argument("source", type=Path, metavar="SOURCE", help="checkpoint folder written by ctdenoise train")
    p.add_argument("target", type=Path, metavar="TARGET", help="folder to write model.safetensors and config.json into")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctdenoise.model import export_half

    print(f"exported {export_half(args.source, args.target)}")
    return EXIT_OK
