"""``ctdenoise serve``: a DICOM node that receives CT series, denoises them and sends the derived series on.

A thin wiring of :mod:`ctdenoise.serve` (docs/dicom-node.md says what it guarantees and refuses).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP, EXIT_OK
from ctdenoise.cli.config_file import apply_config_file, record_given_options
from ctdenoise.cli.options import add_model_options, check_model, inference_settings
from ctdenoise.errors import ConfigError

MB = 1024 * 1024


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help=COMMAND_HELP["serve"],
        description="Listen as a DICOM Storage SCP (CT and Enhanced CT Image Storage, Verification). A series "
        "that has been quiet for --series-timeout seconds is denoised and its derived series written to "
        "--output and/or sent with C-STORE (--forward) and/or STOW-RS (--stow); it stays in the spool until "
        "every destination confirmed it. SIGTERM stops accepting associations, finishes the current step and "
        "exits 0. With --status, print the spool's pending/done/failed series as JSON and exit. Options may "
        "also come from a YAML or TOML file (--config); those given on the command line win.",
    )
    record_given_options(p)
    add_options(p)
    p.set_defaults(func=run)


#: The options of :class:`ctdenoise.serve.guard.AssociationLimits`, in its field order: flag, type, default,
#: metavar, help.
ASSOCIATION_LIMITS = (
    ("--max-associations", int, 64, "N",
     "associations open at once, from all peers together; more are rejected as a transient local limit"),
    ("--max-associations-per-peer", int, 32, "N", "associations open at once from one IP address"),
    ("--association-timeout", float, 10.0, "SECONDS",
     "a new connection that sends no association request within this time is closed"),
    ("--network-timeout", float, 60.0, "SECONDS", "an association silent for this long is aborted"),
    ("--idle-timeout", float, 60.0, "SECONDS",
     "an association that receives no instance for this long is aborted, C-ECHO or not"),
)
LIMIT_OPTIONS = tuple(flag[2:].replace("-", "_") for flag, *_ in ASSOCIATION_LIMITS)

#: Options that a --config file cannot set.
NOT_IN_CONFIG = ("config", "status", "help")


def add_options(p: argparse.ArgumentParser) -> None:
    """Every option of ``ctdenoise serve``."""
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="read options from this YAML (.yaml, .yml) or TOML (.toml) file: keys are the long options "
                   "without dashes (ae_title: CTDENOISE, port: 11112, forward: [AET@HOST:PORT], ...); options given "
                   "on the command line override the file")
    p.add_argument("--spool", type=Path, metavar="DIR",
                   help="durable work folder (created); required, on the command line or in --config")
    p.add_argument("--status", action="store_true", help="print the spool's state as JSON and exit")
    p.add_argument("--ae-title", default="CTDENOISE", help="this node's AE title (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=11112, help="port to listen on (default: %(default)s)")
    p.add_argument("--output", type=Path, metavar="DIR", help="write each derived series into DIR")
    p.add_argument("--forward", action="append", default=[], metavar="AET@HOST:PORT",
                   help="send each derived series with C-STORE to this node (repeatable)")
    p.add_argument("--stow", action="append", default=[], metavar="URL",
                   help="send each derived series with STOW-RS to this DICOMweb studies endpoint, "
                   "e.g. http://pacs:8042/dicom-web/studies (repeatable)")
    p.add_argument("--allow-ae", nargs="+", default=[], metavar="AET",
                   help="accept associations only from these calling AE titles (default: any)")
    p.add_argument("--series-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="a series is complete after this many seconds without a new instance (default: %(default)s)")
    p.add_argument("--max-instance-size", type=float, default=512, metavar="MB",
                   help="refuse instances larger than this (default: %(default)s MB)")
    p.add_argument("--max-series-instances", type=int, default=10000, metavar="N",
                   help="refuse instances beyond this many in one series (default: %(default)s)")
    p.add_argument("--max-spool-size", type=float, default=100, metavar="GB",
                   help="refuse instances while the spool holds this much (default: %(default)s GB)")
    for flag, kind, default, metavar, text in ASSOCIATION_LIMITS:
        p.add_argument(flag, type=kind, default=default, metavar=metavar, help=f"{text} (default: %(default)s)")
    p.add_argument("--retry-initial", type=float, default=5.0, metavar="SECONDS",
                   help="wait before retrying a failed delivery; doubled after each failure (default: %(default)s)")
    p.add_argument("--retry-max", type=float, default=300.0, metavar="SECONDS",
                   help="longest wait between delivery attempts (default: %(default)s)")
    add_model_options(p)


def config_options() -> list[argparse.Action]:
    """The options a --config file may set: all of :func:`add_options` but those in :data:`NOT_IN_CONFIG`."""
    parser = argparse.ArgumentParser(add_help=False)
    add_options(parser)
    return [action for action in parser._actions if action.dest not in NOT_IN_CONFIG]


def run(args: argparse.Namespace) -> int:
    from ctdenoise.serve.spool import spool_status

    if args.config is not None:
        apply_config_file(args, config_options(), args.config)
    if args.spool is None:
        raise ConfigError("spool", "give the spool folder: --spool DIR, or spool: DIR in the --config file")
    if args.status:
        print(json.dumps(spool_status(args.spool), indent=2))
        return EXIT_OK
    if not (args.output or args.forward or args.stow):
        raise ConfigError("destination", "give at least one of --output, --forward or --stow")
    for option in ("series_timeout", "max_instance_size", "max_series_instances", "max_spool_size", "retry_initial",
                   "retry_max", *LIMIT_OPTIONS):
        if getattr(args, option) <= 0:
            raise ConfigError(option, f"--{option.replace('_', '-')} must be positive, got {getattr(args, option)}")
    for title in (args.ae_title, *args.allow_ae):
        if not 0 < len(title.strip()) <= 16 or "\\" in title:
            raise ConfigError("ae-title", f"{title!r} is not a DICOM AE title (1 to 16 characters, no backslash)")
    node = build_node(args)
    quiet_pynetdicom(args.verbose)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    node.run(stop)
    return EXIT_OK


def quiet_pynetdicom(verbose: bool) -> None:
    """pynetdicom's own log lines only with ``-v``: it logs every PDU at INFO and two ERROR lines for every
    association it cannot open (each retry to a destination that is down), while the node logs one line per
    association and one warning per failed delivery attempt itself."""
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)


def build_node(args: argparse.Namespace):
    """The :class:`ctdenoise.serve.node.Node` the options describe, its model loaded and prepared."""
    from ctdenoise.runtime.prepare import load_prepared
    from ctdenoise.serve.derive import SeriesDenoiser
    from ctdenoise.serve.guard import AssociationLimits
    from ctdenoise.serve.node import Node, RetryPolicy
    from ctdenoise.serve.scp import ScpConfig, StorageSCP
    from ctdenoise.serve.senders import CStoreDestination, Destination, FolderDestination, StowDestination
    from ctdenoise.serve.spool import Spool

    check_model(args)  # a missing or broken model fails here, before the slower loading
    settings = inference_settings(args)
    if not isinstance(settings.strength, (int, float)):
        raise ConfigError("strength", "'auto' is not supported by serve (one strength for every series); give a number "
                          "from 0 to 1 or a preset (low, medium, high)")
    destinations: list[Destination] = [FolderDestination(args.output)] if args.output else []
    destinations += [CStoreDestination.parse(spec, args.ae_title) for spec in args.forward]
    destinations += [StowDestination(url) for url in args.stow]
    denoiser = SeriesDenoiser(load_prepared(args.model, settings, clip_weights=args.clip_weights),
                              io_workers=args.io_workers)
    spool = Spool(args.spool, max_bytes=int(args.max_spool_size * 1024 * MB), max_instances=args.max_series_instances)
    limits = AssociationLimits(*(getattr(args, option) for option in LIMIT_OPTIONS))
    scp = StorageSCP(spool, ScpConfig(args.ae_title, args.host, args.port, args.allow_ae,
                                      int(args.max_instance_size * MB), limits))
    return Node(spool, scp, denoiser, destinations, series_timeout=args.series_timeout,
                retry=RetryPolicy(args.retry_initial, args.retry_max))
