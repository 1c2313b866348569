"""``ctdenoise denoise``: batch-denoise DICOM series and NIfTI/NRRD/MHA volumes into OUTDIR."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from ctdenoise.cli.batch_log import finish, log_series_result
from ctdenoise.inference import BACKEND_CHOICES, DEFAULT_STRENGTH, DEVICE_CHOICES, PRECISION_CHOICES, InferenceSettings
from ctdenoise.io.dicom_write import COMPRESSION_SYNTAXES
from ctdenoise.jobs.batch import run_batch
from ctdenoise.jobs.interrupt import stop_on_signals
from ctdenoise.jobs.options import BatchOptions
from ctdenoise.jobs.report import REPORT_FILE
from ctdenoise.jobs.resume import IF_CHANGED_CHOICES
from ctdenoise.jobs.sharding import RankInfo, run_batch_distributed
from ctdenoise.registry import DEFAULT_MODEL_NAME, load_model, model_label, resolve_model_dir
from ctdenoise.strength_table import AUTO_STRENGTH, strength_setting

log = logging.getLogger("ctdenoise.denoise")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The model, inference and file I/O options (``--model`` ... ``--strength``, ``--io-workers``), shared by
    every subcommand that denoises; :func:`inference_settings` turns the model's into InferenceSettings."""
    p.add_argument("--model", default=DEFAULT_MODEL_NAME, help="shipped model name or checkpoint folder (default: %(default)s)")
    p.add_argument("--clip-weights", type=Path, default=None, metavar="FILE",
                   help="CLIP weight file (OpenAI RN50.pt or open_clip state dict) for models that do not carry their encoder")
    p.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto = fp16 on GPU, fp32 on CPU; fp32 forces full precision (docs: Performance)")
    p.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (default: 2 on CPU, 16 on GPU)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile: a one-off compilation (seconds to a minute), "
                   "then faster batches; worth it for long runs")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="GPU only: capture the forward pass as a CUDA graph once and replay it for every batch")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="auto (default): ONNX Runtime for fp32 runs on the CPU when it is installed "
                   "(pip install 'ctdenoise[onnx]'; faster than torch on the CPUs measured), torch otherwise; "
                   "torch or onnxruntime force one")
    p.add_argument("--strength", type=strength_value, default=DEFAULT_STRENGTH, metavar="S",
                   help="0..1: how much of the model's change to apply, a linear blend in HU "
                   "(0 = input unchanged, 1 = model output; default: %(default)s); 'auto': each series' "
                   "strength from its estimated noise, by the model's strength table")
    p.add_argument("--io-workers", type=positive_int, default=None, metavar="N",
                   help="processes that decode and encode a DICOM series' files, overlapped with the model "
                   "(default: one per available core; 1: in the main process)")


def positive_int(text: str) -> int:
    """An integer of at least 1 (argparse turns the error into a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def strength_value(text: str) -> float | str:
    """``--strength``: a number from 0 to 1 or ``auto`` (argparse turns the error into a usage error, exit 2)."""
    if text == AUTO_STRENGTH:
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; use a value from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1 (0 = input unchanged, 1 = model output)")
    return value


def inference_settings(args: argparse.Namespace) -> InferenceSettings:
    """The InferenceSettings of the options :func:`add_model_options` added."""
    return InferenceSettings(
        device=args.device, precision=args.precision, batch_size=args.batch_size, compile=args.compile,
        cuda_graphs=args.cuda_graphs, backend=args.backend,
        strength=strength_setting(args.strength, resolve_model_dir(args.model) if args.strength == AUTO_STRENGTH else None),
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "denoise",
        help="denoise DICOM series / NIfTI volumes",
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
    settings = inference_settings(args)
    if not args.dry_run:
        resolve_model_dir(args.model)  # fail fast, before discovery, when the model does not exist

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
