"""``ctdenoise example DIR``: write the shipped example CT series (built from pydicom's CT_small) to DIR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP, EXIT_OK
from ctdenoise.errors import InputError, OutputError
from ctdenoise.examples import EXAMPLE_DESCRIPTION, EXAMPLE_POSITIONS_MM, write_example_series
from ctdenoise.io import atomic_write_dir, read_volume


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "example",
        help=COMMAND_HELP["example"],
        description=f"Write a {len(EXAMPLE_POSITIONS_MM)}-slice CT series built from the real CT slice that "
        "ships with pydicom (CT_small.dcm) into DIR, e.g. to try 'ctdenoise denoise DIR -o OUT'. "
        "If DIR already holds the example series it is reused as it is (so the command can be run again); "
        "--force writes a new one in its place. A folder holding anything else is never touched.",
    )
    p.add_argument("directory", type=Path, metavar="DIR", help="folder to create (or an empty or example folder)")
    p.add_argument(
        "--force", action="store_true", help="replace an existing example series in DIR with a newly written one"
    )
    p.set_defaults(func=run)


def holds_example_series(folder: Path) -> bool:
    """True if ``folder`` holds exactly one readable CT series written by :func:`write_example_series`."""
    try:
        volume = read_volume(folder)
    except InputError:
        return False
    return volume.description == EXAMPLE_DESCRIPTION and volume.hu.shape[0] == len(EXAMPLE_POSITIONS_MM)


def run(args: argparse.Namespace) -> int:
    folder: Path = args.directory
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, "exists and is not a folder; name a new folder")
    non_empty = folder.is_dir() and any(folder.iterdir())
    if non_empty and not holds_example_series(folder):
        raise OutputError(folder, "already exists and holds files that are not the ctdenoise example; name a new folder")
    if non_empty and not args.force:
        print(f"ctdenoise example: {folder} already holds the example series; reusing it (--force writes a new one)",
              file=sys.stderr)
    else:
        with atomic_write_dir(folder, overwrite=args.force) as staging:
            staging.rmdir()  # write_example_series creates its folder itself
            write_example_series(staging)
    print(folder)
    return EXIT_OK
