"""``ctdenoise adapt``: fine-tune a model on a site's own noisy series (self-supervised) and write a model folder.

Exit codes: 0 written, 2 usage or input error, 3 the guard refused the adapted model (nothing written; the
checkpoints stay, so ``--resume --force`` writes it without training again), 130/143 interrupted (resumable
with ``--resume``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP, EXIT_OK
from ctdenoise.cli.options import add_model_option, positive_int

log = logging.getLogger("ctdenoise.adapt")

EXIT_REFUSED = 3
METHOD_CHOICES = ("neighbours", "recorrupt")  # ctdenoise.adapt.METHODS (not imported: no torch here)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "adapt",
        help=COMMAND_HELP["adapt"],
        description="Fine-tune a model (default: the shipped one) on noisy CT series alone, self-supervised, and "
        "write a model folder for 'ctdenoise denoise --model MODEL_DIR'. Inputs are found and read as "
        "'ctdenoise denoise' reads them (folders, files, .zip, DICOMDIR, NIfTI); unusable ones are skipped with "
        "the reason. A few slices are held out: the adapted model is written only if a no-reference measure "
        "on them is not worse than the base model's (docs: Adapting to your scanner).",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="SERIES_OR_TREE")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="MODEL_DIR", help="model folder to write (must not exist)")
    add_model_option(p, default=None, metavar="BASE", help="base model name or folder (default: the shipped default)")
    p.add_argument("--method", default=None, choices=METHOD_CHOICES,
                   help="recorrupt (default): recorrupted pairs with the scan's own noise texture (image-only); "
                   "neighbours: neighbouring-slice Noise2Noise (thin, non-overlapping slices only; it lost to "
                   "recorrupt where both were measured, docs: Adapting to your scanner)")
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of the run (default: %(default)s)")
    p.add_argument("--iterations", type=positive_int, default=None, help="a fixed number of iterations instead of --minutes")
    p.add_argument("--slices", type=positive_int, default=200, help="use at most N slices in all (default: %(default)s)")
    p.add_argument("--crop", type=positive_int, default=96, help="training crop side in pixels (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="crops per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the interrupted run of this MODEL_DIR")
    p.add_argument("--force", action="store_true", help="write the model even if the guard finds it worse than its base")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ctdenoise.adapt import AdaptSettings, adapt, work_dir_for
    from ctdenoise.jobs.interrupt import stop_on_signals

    settings = AdaptSettings(method=args.method, minutes=args.minutes, iterations=args.iterations,
                             max_slices=args.slices, crop=args.crop, batch_size=args.batch_size, lr=args.lr,
                             seed=args.seed)
    bar = tqdm(unit="it", desc="adapting", disable=args.no_progress or args.quiet, mininterval=2.0)

    def on_step(done: int, planned: int) -> None:
        bar.total = planned
        bar.n = done
        bar.refresh()

    with stop_on_signals() as stop:
        try:
            result = adapt(args.inputs, args.output, args.model, settings, resume=args.resume, force=args.force,
                           stop=stop, on_step=on_step)
        finally:
            bar.close()
    scores = f"guard score {result.adapted.score:.2f} HU against the base model's {result.base.score:.2f} HU"
    if result.model_dir is None:
        print(f"ctdenoise adapt: refused: the adapted model is worse than its base on the held-out slices ({scores}; "
              f"docs: Adapting to your scanner); nothing was written. To write it anyway: the same command with "
              f"--resume --force (the checkpoint is in {work_dir_for(args.output)})", file=sys.stderr)
        return EXIT_REFUSED
    log.info("adapted model written to %s (%s, %d iterations; %s%s)", result.model_dir, result.method,
             result.iterations, scores, ", refused by the guard, written with --force" if result.refused else "")
    return EXIT_OK
