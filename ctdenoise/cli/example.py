"""``ctdenoise example DIR``: write the shipped example CT series (built from pydicom's CT_small) to DIR."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctdenoise.cli import EXIT_OK
from ctdenoise.errors import OutputError
from ctdenoise.examples import EXAMPLE_POSITIONS_MM, write_example_series


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "example",
        help="write the example CT series",
        description=f"Write a {len(EXAMPLE_POSITIONS_MM)}-slice CT series built from the real CT slice that "
        "ships with pydicom (CT_small.dcm) into DIR, e.g. to try `ctdenoise denoise DIR -o OUT`.",
    )
    p.add_argument("directory", type=Path, metavar="DIR", help="new folder to create")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.directory.exists():
        raise OutputError(args.directory, "already exists; name a new folder")
    folder = write_example_series(args.directory)
    print(folder)
    return EXIT_OK
