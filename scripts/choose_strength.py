"""Measure a model at several strengths on the validation slices of a training recipe (never the test slices).

Usage: ``python scripts/choose_strength.py CONFIG MODEL OUT.json [--strengths 0,0.25,...]``

Builds the validation set of ``CONFIG`` exactly as training does (same slices, crops, noise levels and seeds;
:func:`ctdenoise.training.validation.build_validation_set`), runs ``MODEL`` once per input, blends its output
with the input at each strength (:func:`ctdenoise.inference.blend_strength`) and scores every level under the
recipe's protocols, plus the body RMSE. It also records the estimated noise of each level's inputs
(:func:`ctdenoise.noise_estimate.estimate_noise_hu`). The selection score of each strength is the recipe's
rule (:func:`ctdenoise.training.validation.selection_score`); the strength with the best score is printed
and written as ``best_strength``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ctdenoise.evaluate.metrics import body_rmse_hu, compute_metrics
from ctdenoise.inference import blend_strength
from ctdenoise.intensity import unit_to_hu
from ctdenoise.noise_estimate import estimate_noise_hu
from ctdenoise.registry import load_model
from ctdenoise.training import load_train_config
from ctdenoise.training.data import load_slices, split_series
from ctdenoise.training.validation import build_validation_set, selection_score


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="training recipe whose validation set is used")
    parser.add_argument("model", help="shipped model name or checkpoint folder")
    parser.add_argument("output", type=Path, help="JSON file to write")
    parser.add_argument("--strengths", type=_floats, default=[0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    args = parser.parse_args()
    config = load_train_config(args.config)
    protocols = config.validation.protocols
    data = build_validation_set(load_slices(split_series(config.data).validation), config.validation)
    model = load_model(args.model).eval()
    levels = {}
    by_strength: dict[float, dict] = {s: {} for s in args.strengths}
    for label, inputs in data.noisy.items():
        noisy_hu = [unit_to_hu(x.numpy()) for x in inputs]
        outputs = [unit_to_hu(model(x[None, None])[0, 0].float().numpy()) for x in inputs]
        levels[label] = {"input_noise_hu": estimate_noise_hu(np.stack(noisy_hu))}
        for strength in args.strengths:
            blended = [blend_strength(torch.from_numpy(n), torch.from_numpy(o), strength).numpy()
                       for n, o in zip(noisy_hu, outputs)]
            per_slice = {p: [compute_metrics(b, c, p) for b, c in zip(blended, data.clean_hu)] for p in protocols}
            scores = {p: {m: float(np.mean([r[m] for r in results])) for m in ("psnr", "ssim", "rmse_hu")}
                      for p, results in per_slice.items()}
            scores["rmse_body_hu"] = float(np.mean([body_rmse_hu(b, c) for b, c in zip(blended, data.clean_hu)]))
            by_strength[strength][label] = scores
        print(label, levels[label], {s: round(by_strength[s][label][protocols[0]]["psnr"], 2) for s in args.strengths})
    result = {
        "config": str(args.config), "model": args.model, "validation_slices": list(data.sources),
        "levels": levels,
        "by_strength": {str(s): {"levels": v, "selection_score": selection_score(
            {k: {p: v[k][p] for p in protocols} for k in v}, protocols)} for s, v in by_strength.items()},
    }
    best = max(args.strengths, key=lambda s: result["by_strength"][str(s)]["selection_score"])
    result["best_strength"] = best
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for s in args.strengths:
        print(f"strength {s:g}: selection score {result['by_strength'][str(s)]['selection_score']:.3f}")
    print(f"best strength by the recipe's selection rule: {best:g}")


if __name__ == "__main__":
    main()
