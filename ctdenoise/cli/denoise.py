"""``ctdenoise denoise``: batch-denoise DICOM series and NIfTI/NRRD/MHA volumes into OUTDIR."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP
from ctdenoise.cli.batch_log import finish, log_series_result
from ctdenoise.cli.options import add_model_options, check_model, inference_settings
from ctdenoise.io.dicom_write import COMPRESSION_SYNTAXES
from ctdenoise.jobs.report import REPORT_FILE
from ctdenoise.jobs.resume import IF_CHANGED_CHOICES

log = logging.getLogger("ctdenoise.denoise")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "denoise",
        help=COMMAND_HELP["denoise"],
        description="Denoise every series found under INPUT (DICOM files, folders or trees of many series; "
        "NIfTI/NRRD/MHA files). The output tree mirrors the input, one folder per series, and "
        f"OUTDIR/{REPORT_FILE} lists every series with its status. INPUT may also be a .zip archive of DICOM "
        "files or a DICOMDIR file. A re-run resumes: series whose input is unchanged are skipped. SIGINT "
        "(Ctrl-C) or SIGTERM stops after the current batch of slices, drops the unfinished series and writes "
        f"the report. Exit code 0: all succeeded; 1: some failed (the rest were written) or have changed input "
        "that --if-changed report kept; 2: usage error (also: an INPUT that does not exist or holds no CT); "
        "130/143: interrupted by SIGINT/SIGTERM.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="DICOM file, folder or tree, .zip of DICOM files, DICOMDIR, or NIfTI/NRRD/MHA file")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR",
                   help="output folder (outside every INPUT); one folder per series and report.json")
    add_model_options(p)
    p.add_argument("--format", dest="output_format", default="same", choices=("same", "dicom", "nifti", "nrrd", "mha"),
                   help="output format; 'same' writes DICOM for DICOM input and the input's format otherwise; "
                   "nifti refuses sheared (tilted-gantry) volumes, which nrrd and mha hold exactly")
    p.add_argument("--compression", default="none", choices=tuple(COMPRESSION_SYNTAXES),
                   help="DICOM output only: lossless pixel compression (decodes to exactly the same values; "
                   "default: %(default)s, Explicit VR Little Endian)")
    p.add_argument("--write-unchanged", action="store_true",
                   help="with --strength auto, also write the series for which it chose strength 0 (noise "
                   "already low): an unchanged copy; by default they are reported 'unchanged' and not written")
    p.add_argument("--overwrite", action="store_true", help="replace series already in OUTDIR (default: skip them)")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be done, with slice counts; load and write nothing")
    p.add_argument("--if-changed", default="redo", choices=IF_CHANGED_CHOICES,
                   help="what a re-run does with a finished series whose input changed since (other SOP "
                   "Instance UIDs or number of files, other file bytes): redo it, or report it and keep the "
                   "output (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_model(args)  # a missing or broken model fails here, before the inputs are looked at
    settings = inference_settings(args)
    from tqdm import tqdm

    from ctdenoise.jobs.batch import run_batch
    from ctdenoise.jobs.interrupt import stop_on_signals
    from ctdenoise.jobs.options import BatchOptions
    from ctdenoise.jobs.sharding import RankInfo, run_batch_distributed
    from ctdenoise.registry import load_model, model_label

    def load() -> tuple:
        model = load_model(args.model, clip_weights=args.clip_weights)
        return model, model_label(args.model)

    bar = tqdm(unit="slice", desc="denoising", disable=True if args.quiet else None, file=sys.stderr)

    def on_start(series: int, slices: int) -> None:
        bar.reset(total=slices)
        log.info("%d series to denoise, %d slices", series, slices)

    rank = RankInfo.from_env()  # set under torchrun: this process denoises its share of the series
    with stop_on_signals() as stop:
        try:
            options = BatchOptions(
                settings=settings, output_format=args.output_format, compression=args.compression,
                overwrite=args.overwrite, if_changed=args.if_changed, write_unchanged=args.write_unchanged,
                io_workers=args.io_workers, stop=stop,
                on_start=on_start, progress=bar.update, on_series_done=log_series_result,
            )
            if rank is not None and not args.dry_run:
                report = run_batch_distributed(args.inputs, args.output, load, rank, options)
            else:
                report = run_batch(args.inputs, args.output, load, options, dry_run=args.dry_run)
        finally:
            bar.close()
    if args.dry_run and (rank is None or rank.rank == 0):
        print(report.to_json())
    return finish(report, args.output, dry_run=args.dry_run)
