"""``ctdenoise train``: train a CLIPDenoiser from a YAML recipe (single process, or under torchrun for DDP)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP, EXIT_OK

log = logging.getLogger("ctdenoise.train")

#: Where a run goes when --output is not given: runs/<config file stem>.
DEFAULT_RUNS_DIR = Path("runs")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help=COMMAND_HELP["train"],
        description="Train a CLIPDenoiser as the YAML recipe says (the recipe format, with an example to copy: the "
        "docs' Training page). Writes "
        "OUTPUT/config.yaml, OUTPUT/train_log.jsonl (JSON lines: loss, lr, validation PSNR/SSIM), resumable "
        "checkpoints in OUTPUT/checkpoints/ and the final model in OUTPUT/model/ (use it with "
        "'ctdenoise denoise --model OUTPUT/model'). For several processes/GPUs launch it with "
        "'torchrun --nproc_per_node N -m ctdenoise train ...'.",
    )
    p.add_argument("--config", required=True, type=Path, help="training recipe (YAML)")
    p.add_argument("--output", type=Path, default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctdenoise.training import load_train_config, train

    config = load_train_config(args.config)
    output = args.output if args.output is not None else DEFAULT_RUNS_DIR / args.config.stem
    result = train(config, output, resume=args.resume, progress=not args.no_progress)
    log.info("model written to %s after %d iterations", result.model_dir, result.iterations)
    if result.validation:
        for level, by_protocol in result.validation.items():
            for protocol, scores in by_protocol.items():
                log.info("validation %s, %s: PSNR %.2f dB, SSIM %.4f", level, protocol, scores["psnr"], scores["ssim"])
    return EXIT_OK
