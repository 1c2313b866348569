"""Compare trained models on held-out real CT slices with physics-simulated low dose, and export the best.

Usage (the shipped model's table was made with exactly this)::

    python scripts/compare_encoders.py runs/offline_frozen_random runs/offline_trainable_encoder \\
        --data runs/offline_ct --held-out PANCREAS_0001 JXD191021006 --dose 0.25 --seeds 0 1 2 \\
        --json runs/encoder_comparison.json --export-best ctdenoise/models/default

Each held-out slice (read with :func:`ctdenoise.io.read_volume`, never seen in training) gets a
quarter-dose version from :func:`ctdenoise.simulate.simulate_low_dose` for each seed; every run's
``model/`` denoises it through :func:`ctdenoise.runtime.denoise.denoise_hu` (the path ``ctdenoise denoise``
takes, fp32 on the CPU), and PSNR/SSIM/RMSE are computed against the normal-dose slice under the
``redcnn`` and ``clip-paper`` protocols, averaged over slices and seeds. The noisy input is scored as
the baseline row. ``--export-best`` writes the run with the highest ``redcnn`` PSNR in half precision
(safetensors + JSON, encoder included) and scores that exported copy too. The checkpoint format keeps
encoder tensors in float32 unless float16 holds them exactly (so their sha256 stays verifiable); a random
or trained encoder is therefore rounded to float16 first, which the exported copy's row measures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ctdenoise.metrics import compute_metrics
from ctdenoise.model import export_half, load_checkpoint
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.simulate import simulate_low_dose
from ctdenoise.training.config import DataConfig
from ctdenoise.training.data import CTSlice, load_slices, split_series
from ctdenoise.training.loop import MODEL_DIR

PROTOCOLS = ("redcnn", "clip-paper")
CPU_FP32 = InferenceSettings(device="cpu", precision="fp32", batch_size=1)


def held_out_slices(root: str, names: list[str]) -> list[CTSlice]:
    """The slices of the series of the held-out patients ``names`` under ``root``."""
    split = split_series(DataConfig(root=root, split_by="patient", validation=tuple(names)))
    return load_slices(split.validation)


def noisy_versions(slices: list[CTSlice], dose: float, seeds: list[int]) -> list[tuple[int, int, np.ndarray]]:
    """(slice index, seed, simulated low-dose HU) for every slice and seed."""
    return [
        (index, seed, simulate_low_dose(s.hu, s.spacing_mm, dose_fraction=dose, seed=np.random.default_rng([seed, index])))
        for index, s in enumerate(slices)
        for seed in seeds
    ]


def score(outputs: list[np.ndarray], slices: list[CTSlice], cases: list[tuple[int, int, np.ndarray]]) -> dict:
    """Mean (and per-case) PSNR/SSIM/RMSE of ``outputs`` (one per case) under each protocol."""
    per_case = []
    for output, (index, seed, _) in zip(outputs, cases):
        metrics = {p: compute_metrics(output, slices[index].hu, p) for p in PROTOCOLS}
        per_case.append({"slice": slices[index].source, "seed": seed, **metrics})
    mean = {
        p: {m: float(np.mean([c[p][m] for c in per_case])) for m in ("psnr", "ssim", "rmse_hu")} for p in PROTOCOLS
    }
    return {"mean": mean, "cases": per_case}


def evaluate_model(model_dir: Path, slices: list[CTSlice], cases: list[tuple[int, int, np.ndarray]]) -> dict:
    model = load_checkpoint(model_dir)
    return score([denoise_hu(model, noisy, CPU_FP32) for _, _, noisy in cases], slices, cases)


def describe(model_dir: Path) -> dict:
    """Encoder and recipe facts of a model folder, from its config.json."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    summary = config["training_summary"]
    recipe = summary.get("recipe", {})
    return {
        "encoder": summary.get("encoder_weights", {}),
        "iterations": summary.get("iterations"),
        "crop_size": recipe.get("crop_size"),
        "batch_size": recipe.get("batch_size"),
        "noise": recipe.get("noise", {}).get("kind"),
    }


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table: one row per model (and the noisy input)."""
    lines = [
        "| model | encoder | redcnn PSNR (dB) | redcnn SSIM | redcnn RMSE (HU) | clip-paper PSNR (dB) | clip-paper SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r, c = row["scores"]["mean"]["redcnn"], row["scores"]["mean"]["clip-paper"]
        lines.append(
            f"| {row['name']} | {row['encoder_text']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['rmse_hu']:.1f} "
            f"| {c['psnr']:.2f} | {c['ssim']:.4f} |"
        )
    return "\n".join(lines)


def encoder_text(facts: dict) -> str:
    encoder = facts["encoder"]
    kind = "CLIP" if encoder.get("kind") == "clip" else f"random (seed {encoder.get('init_seed')})"
    return f"{kind}, {'trained' if encoder.get('trained') else 'frozen'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders (each with model/)")
    parser.add_argument("--data", required=True, help="data root of the held-out patients")
    parser.add_argument("--held-out", nargs="+", required=True, help="patient folders never trained on")
    parser.add_argument("--dose", type=float, default=0.25, help="simulated dose fraction (default 0.25)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="noise seeds per slice")
    parser.add_argument("--json", type=Path, required=True, help="where to write all numbers")
    parser.add_argument("--export-best", type=Path, default=None, help="write the best model here in fp16")
    args = parser.parse_args()

    slices = held_out_slices(args.data, args.held_out)
    cases = noisy_versions(slices, args.dose, args.seeds)
    rows = [{"name": f"noisy input (dose {args.dose:g})", "encoder_text": "-", "scores": score([c[2] for c in cases], slices, cases)}]
    for run in args.runs:
        facts = describe(run / MODEL_DIR)
        rows.append({"name": run.name, "run": str(run), "facts": facts, "encoder_text": encoder_text(facts),
                     "scores": evaluate_model(run / MODEL_DIR, slices, cases)})
        print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    trained = rows[1:]
    best = max(trained, key=lambda row: row["scores"]["mean"]["redcnn"]["psnr"])
    if args.export_best is not None:
        export_half(Path(best["run"]) / MODEL_DIR, args.export_best)
        rows.append({"name": f"{best['name']} exported fp16 ({args.export_best})", "encoder_text": best["encoder_text"],
                     "scores": evaluate_model(args.export_best, slices, cases)})
    table = markdown_table(rows)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "held_out": args.held_out, "slices": [s.source for s in slices], "dose": args.dose, "seeds": args.seeds,
        "best": best["name"], "rows": rows, "markdown": table,
    }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
