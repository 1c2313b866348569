"""The ``ctdenoise`` command line: one entry point, one module per subcommand.

Each subcommand module provides ``add_parser(subparsers)`` (which sets ``func``) and a ``run(args) -> int``.
Only the module of the subcommand being run is imported (``ctdenoise denoise`` does not pay for the
evaluation and simulation modules and MONAI), so a batch job starts in the time it takes to import torch.
Exit codes: 0 success, 1 some inputs failed (the rest were written), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ctdenoise import __version__
from ctdenoise.errors import CTDenoiseError

#: Subcommand modules under ``ctdenoise.cli``, in the order ``--help`` lists them.
SUBCOMMANDS = ("denoise", "evaluate", "example", "info", "serve", "simulate", "train")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def build_parser(commands: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    """The argument parser with the subcommands ``commands`` registered (by default all of them)."""
    parser = argparse.ArgumentParser(
        prog="ctdenoise", description="Low-dose CT denoising with a frozen CLIP encoder (CLIPDenoising)."
    )
    parser.add_argument("--version", action="version", version=f"ctdenoise {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands:
        importlib.import_module(f"ctdenoise.cli.{name}").add_parser(subparsers)
    return parser


def requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` runs: its first argument that is not an option, if that names one of
    :data:`SUBCOMMANDS` (the top-level options take no values); None otherwise."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = requested_command(argv)
    args = build_parser([command] if command else SUBCOMMANDS).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except CTDenoiseError as error:
        print(f"ctdenoise {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
