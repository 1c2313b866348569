"""The ``ctdenoise`` command line: one entry point, one module per subcommand.

Each subcommand module provides ``add_parser(subparsers)`` (which sets ``func``) and a ``run(args) -> int``.
Only the module of the subcommand being run is imported (``ctdenoise denoise`` does not pay for the
evaluation and simulation modules and MONAI), ``ctdenoise --help`` imports none, and the modules import
torch only when a command runs, so ``--help``, ``serve --status`` and a bad ``--model`` answer at once.
Exit codes: 0 success, 1 some inputs failed (the rest were written), 2 usage or configuration error,
130/143 interrupted by SIGINT/SIGTERM (128 + the signal number).

Logging options (``-v``, ``-q``, ``--log-file``) are accepted before and after the subcommand. Log lines carry
a timestamp and go through tqdm's writer, so they never tear a progress bar.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ctdenoise import __version__
from ctdenoise.errors import CTDenoiseError, OutputError
from ctdenoise.jobs.interrupt import StopRequested

#: Subcommand modules under ``ctdenoise.cli``, in the order ``--help`` lists them.
SUBCOMMANDS = ("adapt", "denoise", "evaluate", "example", "export", "info", "iq", "serve", "simulate", "strength",
               "train")

#: The one-line help of subcommands, which their modules register and ``ctdenoise --help`` lists without
#: importing them (a subcommand missing here is imported to be listed).
COMMAND_HELP = {
    "adapt": "fine-tune a model on your own noisy series (self-supervised) with a do-no-harm guard",
    "denoise": "denoise DICOM series / NIfTI volumes",
    "evaluate": "score the model and baselines on paired low-/normal-dose CT (Mayo-2016 or folder pairs)",
    "example": "write the example CT series",
    "export": "export a trained model folder for shipping (float16 tensors)",
    "info": "versions, devices, models",
    "iq": "measure image quality as CT physicists do (noise, NPS, TTF, d')",
    "serve": "run a DICOM node: receive CT series, denoise, send the derived series on",
    "simulate": "simulate a low-dose scan from a normal-dose one",
    "strength": "choose a model's strength: 'strength fit' scores strengths and fits the auto table, 'strength presets' measures low|medium|high",
    "train": "train a model from a YAML recipe",
}

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT = 130


def build_parser(commands: Sequence[str] = SUBCOMMANDS, *, listing_only: bool = False) -> argparse.ArgumentParser:
    """The argument parser with the subcommands ``commands`` registered (by default all of them); with
    ``listing_only``, those in :data:`COMMAND_HELP` only by name and help line, their modules not imported
    (enough for ``ctdenoise --help``, which then starts without torch)."""
    parser = argparse.ArgumentParser(
        prog="ctdenoise", description="Low-dose CT denoising with a frozen CLIP encoder (CLIPDenoising)."
    )
    parser.add_argument("--version", action="version", version=f"ctdenoise {__version__}")
    add_logging_options(parser, None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands:
        if listing_only and name in COMMAND_HELP:
            subparsers.add_parser(name, help=COMMAND_HELP[name])
        else:
            importlib.import_module(f"ctdenoise.cli.{name}").add_parser(subparsers)
    for sub in subparsers.choices.values():
        add_logging_options(sub, argparse.SUPPRESS)  # given after the subcommand: overrides the top-level value
    return parser


#: Top-level options that take a value (:func:`requested_command` skips the value).
VALUE_OPTIONS = ("--log-file",)


def add_logging_options(parser: argparse.ArgumentParser, default: object) -> None:
    """-v/--verbose, -q/--quiet and --log-file FILE; ``default`` None for the top level, SUPPRESS for subcommands."""
    flag_default = False if default is None else default
    parser.add_argument("-v", "--verbose", action="store_true", default=flag_default, help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", default=flag_default,
                        help="log only warnings and errors on the terminal and show no progress bar")
    parser.add_argument("--log-file", type=Path, default=default, metavar="FILE",
                        help="also append the log (timestamped, without the progress bar) to FILE")


class TqdmHandler(logging.Handler):
    """A logging handler that prints through ``tqdm.write``, above any progress bar, to stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler's convention)
            self.handleError(record)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def configure_logging(verbose: bool, quiet: bool, log_file: Path | None) -> None:
    """Root logging: the terminal gets DEBUG with ``verbose``, WARNING with ``quiet``, else INFO; ``log_file``
    gets DEBUG with ``verbose``, else INFO, whatever ``quiet`` says. OutputError if it cannot be opened."""
    formatter = logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT)
    terminal = TqdmHandler(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    handlers: list[logging.Handler] = [terminal]
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as exc:
            raise OutputError(log_file, f"cannot open the log file: {exc.strerror or exc}") from None
        handlers[-1].setLevel(logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    for handler in _installed_handlers:  # from an earlier call in this process (main() run twice)
        root.removeHandler(handler)
        handler.close()
    _installed_handlers[:] = handlers
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


_installed_handlers: list[logging.Handler] = []


def requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` runs: its first argument that is not an option, if that names one of
    :data:`SUBCOMMANDS` (the top-level options take no values); None otherwise."""
    values = {i + 1 for i, arg in enumerate(argv) if arg in VALUE_OPTIONS}
    first = next((arg for i, arg in enumerate(argv) if not arg.startswith("-") and i not in values), None)
    return first if first in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = requested_command(argv)
    args = build_parser([command] if command else SUBCOMMANDS, listing_only=command is None).parse_args(argv)
    try:
        configure_logging(args.verbose, args.quiet, args.log_file)
        return int(args.func(args))
    except CTDenoiseError as error:
        print(f"ctdenoise {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"ctdenoise {args.command}: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except StopRequested as stopped:  # a signal while looking for inputs, before any output existed
        print(f"ctdenoise {args.command}: interrupted by {stopped}; nothing was written", file=sys.stderr)
        return 128 + stopped.signum


if __name__ == "__main__":
    sys.exit(main())
