"""Export a trained model folder for shipping: every tensor in float16, the training summary kept.

Usage: ``python scripts/export_model.py RUN/model ctdenoise/models/default``

Wraps :func:`ctdenoise.model.export_half`; the target's other files (its MODEL_CARD.md) are left alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctdenoise.model import export_half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="checkpoint folder written by ctdenoise train (model/ or best_model/)")
    parser.add_argument("target", type=Path, help="folder to write model.safetensors and config.json into")
    args = parser.parse_args()
    print(f"exported {export_half(args.source, args.target)}")


if __name__ == "__main__":
    main()
