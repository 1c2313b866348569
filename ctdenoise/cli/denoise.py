"""``ctdenoise denoise``: batch-denoise DICOM series and NIfTI/NRRD/MHA volumes into OUTDIR."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from ctdenoise.batch import REPORT_FILE, SeriesResult, run_batch
from ctdenoise.cli import EXIT_OK, EXIT_PARTIAL
from ctdenoise.distributed import RankInfo, run_batch_distributed
from ctdenoise.inference import BACKEND_CHOICES, DEFAULT_STRENGTH, DEVICE_CHOICES, PRECISION_CHOICES, InferenceSettings
from ctdenoise.io.dicom_write import COMPRESSION_SYNTAXES
from ctdenoise.registry import DEFAULT_MODEL_NAME, load_model, model_label, resolve_model_dir

log = logging.getLogger("ctdenoise.denoise")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The model and inference options (``--model`` ... ``--backend``), shared by every subcommand that
    denoises; :func:`inference_settings` turns them into InferenceSettings."""
    p.add_argument("--model", default=DEFAULT_MODEL_NAME, help="shipped model name or checkpoint folder (default: %(default)s)")
    p.add_argument("--clip-weights", type=Path, default=None, metavar="FILE",
                   help="CLIP weight file (OpenAI RN50.pt or open_clip state dict) for models that do not carry their encoder")
    p.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto = fp16 on GPU, fp32 on CPU; fp32 forces full precision (README, 'Performance')")
    p.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (default: 2 on CPU, 16 on GPU)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile: a one-off compilation (seconds to a minute), "
                   "then faster batches; worth it for long runs")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="GPU only: capture the forward pass as a CUDA graph once and replay it for every batch")
    p.add_argument("--backend", default="torch", choices=BACKEND_CHOICES,
                   help="onnxruntime: run the model in fp32 on the CPU with ONNX Runtime, faster than torch on "
                   "the CPUs measured (needs pip install 'ctdenoise[onnx]')")
    p.add_argument("--strength", type=strength_value, default=DEFAULT_STRENGTH, metavar="S",
                   help="0..1: how much of the model's change to apply, a linear blend in HU "
                   "(0 = input unchanged, 1 = model output; default: %(default)s)")


def strength_value(text: str) -> float:
    """``--strength``: a number from 0 to 1 (argparse turns the error into a usage error, exit 2)."""
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
        cuda_graphs=args.cuda_graphs, backend=args.backend, strength=args.strength,
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "denoise",
        help="denoise DICOM series / NIfTI volumes",
        description="Denoise every series found under INPUT (DICOM files, folders or trees of many series; "
        "NIfTI/NRRD/MHA files). The output tree mirrors the input, one folder per series, and "
        f"OUTDIR/{REPORT_FILE} lists every series with its status. Exit code 0: all succeeded; "
        "1: some failed (the rest were written); 2: usage error.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR")
    add_model_options(p)
    p.add_argument("--format", dest="output_format", default="same", choices=("same", "dicom", "nifti", "nrrd", "mha"),
                   help="output format; 'same' writes DICOM for DICOM input and the input's format otherwise; "
                   "nifti refuses sheared (tilted-gantry) volumes, which nrrd and mha hold exactly")
    p.add_argument("--compression", default="none", choices=tuple(COMPRESSION_SYNTAXES),
                   help="DICOM output only: lossless pixel compression (decodes to exactly the same values; "
                   "default: %(default)s, Explicit VR Little Endian)")
    p.add_argument("--overwrite", action="store_true", help="replace series already in OUTDIR (default: skip them)")
    p.add_argument("--dry-run", action="store_true", help="list what would be done; load and write nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = inference_settings(args)
    if not args.dry_run:
        resolve_model_dir(args.model)  # fail fast, before discovery, when the model does not exist

    def load() -> tuple:
        model = load_model(args.model, clip_weights=args.clip_weights)
        return model, model_label(args.model)

    bar = tqdm(unit="slice", desc="denoising", disable=None, file=sys.stderr)

    def on_series_done(result: SeriesResult) -> None:
        if result.status == "failed":
            log.warning("%s: failed: %s", result.key, result.error)
        else:
            log.info("%s: %s (%s slices, %s s)", result.key, result.status, result.slices, result.seconds)

    rank = RankInfo.from_env()  # set under torchrun: this process denoises its share of the series
    try:
        if rank is not None and not args.dry_run:
            report = run_batch_distributed(
                args.inputs, args.output, load, rank, settings=settings, output_format=args.output_format,
                overwrite=args.overwrite, on_series_done=on_series_done, progress=bar.update,
                compression=args.compression,
            )
        else:
            report = run_batch(
                args.inputs, args.output, load, settings=settings, output_format=args.output_format,
                overwrite=args.overwrite, dry_run=args.dry_run, on_series_done=on_series_done, progress=bar.update,
                compression=args.compression,
            )
    finally:
        bar.close()
    if args.dry_run and (rank is None or rank.rank == 0):
        print(report.to_json())
    failed = [s for s in report.series if s.status == "failed"]
    log.info("%d series, %d failed; report: %s", len(report.series), len(failed), args.output / REPORT_FILE)
    return EXIT_PARTIAL if failed else EXIT_OK
