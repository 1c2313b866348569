"""Score a model at several strengths on a recipe's validation slices (never the test slices); fit its auto table.

Usage: ``python scripts/choose_strength.py [CONFIG [MODEL [OUT.json]]] [--model M] [--output OUT.json]
[--strengths 0,0.1,...] [--write-table]``; CONFIG defaults to ``configs/train_offline_volumes.yaml``, MODEL to
the shipped ``default``, OUT.json to ``runs/strength_<model folder name>.json``. Refit the shipped model's
table in one step: ``python scripts/choose_strength.py --model ctdenoise/models/default --write-table``.

Builds the validation set of ``CONFIG`` exactly as training does (same slices, crops, noise levels and seeds;
:func:`ctdenoise.training.validation.build_validation_set`), runs ``MODEL`` once per input, blends its output
with the input at each strength (:func:`ctdenoise.inference.blend_strength`) and scores every level under the
recipe's protocols, plus the body RMSE. The selection score of each strength is the recipe's rule
(:func:`ctdenoise.training.validation.selection_score`); the strength with the best score is printed and
written as ``best_strength``.

The ``auto`` fit: each validation input's estimated noise (:func:`ctdenoise.noise_estimate.estimate_noise_hu`,
the estimator of ``report.json`` and ``--strength auto``) and, per level, the median of those estimates and
the strength of the grid with the best mean PSNR under the recipe's first protocol (also each slice's own
best). The table's points are the levels' (median noise, best strength), made non-decreasing by isotonic
regression (:func:`ctdenoise.strength_table.fit_strength_points`). How well it does is measured on the same
slices (in-sample): each input at the table's strength for its own estimated noise (the default strength where
it has none), against the levels' best grid strength and strength 1, under the same rule. ``--write-table`` writes the table as ``MODEL/strength.json``
(:func:`ctdenoise.strength_table.write_strength_table`; MODEL must then be a model folder).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from ctdenoise.inference import DEFAULT_STRENGTH, blend_strength
from ctdenoise.intensity import unit_to_hu
from ctdenoise.metrics import body_rmse_hu, compute_metrics
from ctdenoise.noise_estimate import estimate_noise_hu
from ctdenoise.registry import load_model, recorded_tensors_sha256, resolve_model_dir
from ctdenoise.strength_table import StrengthTable, fit_strength_points, write_strength_table
from ctdenoise.training import load_train_config
from ctdenoise.training.data import load_slices, split_series
from ctdenoise.training.validation import build_validation_set, selection_score

DEFAULT_CONFIG = Path("configs/train_offline_volumes.yaml")
GRID = [round(0.1 * k, 1) for k in range(11)]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def score(blended: list[np.ndarray], clean: tuple[np.ndarray, ...], protocols: tuple[str, ...]) -> dict:
    """Per-slice metrics of ``blended`` against ``clean`` under each protocol, their means, and the body RMSE."""
    per_slice = {p: [compute_metrics(b, c, p) for b, c in zip(blended, clean)] for p in protocols}
    scores: dict = {p: {m: float(np.mean([r[m] for r in results])) for m in ("psnr", "ssim", "rmse_hu")}
                    for p, results in per_slice.items()}
    scores["rmse_body_hu"] = float(np.mean([body_rmse_hu(b, c) for b, c in zip(blended, clean)]))
    scores["slice_psnr"] = [float(r["psnr"]) for r in per_slice[protocols[0]]]
    return scores


def blend_all(noisy_hu: list[np.ndarray], outputs: list[np.ndarray], strengths: list[float]) -> list[np.ndarray]:
    """Each input blended with its model output at its strength."""
    return [blend_strength(torch.from_numpy(n), torch.from_numpy(o), s).numpy()
            for n, o, s in zip(noisy_hu, outputs, strengths)]


def rule_score(by_level: dict, protocols: tuple[str, ...]) -> float:
    """The recipe's selection score of ``{level: scores}``."""
    return selection_score({k: {p: v[p] for p in protocols} for k, v in by_level.items()}, protocols)


def fit_auto(levels: dict, by_strength: dict, strengths: list[float], protocol: str) -> dict:
    """The table's points from the levels' median input noise and best grid strength (mean ``protocol`` PSNR),
    with each slice's own best strength for reference."""
    fit_levels = {}
    for label, level in levels.items():
        psnr = {s: by_strength[s][label][protocol]["psnr"] for s in strengths}
        slice_psnr = np.array([by_strength[s][label]["slice_psnr"] for s in strengths])  # (strengths, slices)
        known = [n for n in level["slice_noise_hu"] if n is not None]
        fit_levels[label] = {
            "median_noise_hu": float(np.median(known)) if known else None,
            "best_strength": max(strengths, key=lambda s: psnr[s]),
            "slice_best_strengths": [strengths[int(k)] for k in np.argmax(slice_psnr, axis=0)],
        }
    usable = {k: v for k, v in fit_levels.items() if v["median_noise_hu"] is not None}
    points = fit_strength_points([v["median_noise_hu"] for v in usable.values()],
                                 [v["best_strength"] for v in usable.values()])
    return {"protocol": protocol, "levels": fit_levels, "points": [list(p) for p in points]}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?", default=DEFAULT_CONFIG,
                        help=f"training recipe whose validation set is used (default: {DEFAULT_CONFIG})")
    parser.add_argument("model_arg", nargs="?", metavar="MODEL", help="shipped model name or checkpoint folder")
    parser.add_argument("output_arg", type=Path, nargs="?", metavar="OUT.json", help="JSON file to write")
    parser.add_argument("--model", help="the same as MODEL (default: the shipped default model)")
    parser.add_argument("--output", type=Path, help="the same as OUT.json")
    parser.add_argument("--strengths", type=_floats, default=GRID, help="grid of strengths (default: 0, 0.1 ... 1)")
    parser.add_argument("--write-table", action="store_true",
                        help="write the fitted table as MODEL/strength.json (the table of --strength auto)")
    args = parser.parse_args()
    model_spec = args.model or args.model_arg or "default"
    model_dir = resolve_model_dir(model_spec)
    output = args.output or args.output_arg or Path("runs") / f"strength_{model_dir.name}.json"
    strengths = sorted(set(args.strengths))
    config = load_train_config(args.config)
    protocols = tuple(config.validation.protocols)
    data = build_validation_set(load_slices(split_series(config.data).validation), config.validation)
    model = load_model(model_spec).eval()
    levels, inputs_hu, outputs_hu = {}, {}, {}
    by_strength: dict[float, dict] = {s: {} for s in strengths}
    for label, inputs in data.noisy.items():
        noisy_hu = [unit_to_hu(x.numpy()) for x in inputs]
        outputs = [unit_to_hu(model(x[None, None])[0, 0].float().numpy()) for x in inputs]
        inputs_hu[label], outputs_hu[label] = noisy_hu, outputs
        levels[label] = {"input_noise_hu": estimate_noise_hu(np.stack(noisy_hu)),
                         "slice_noise_hu": [estimate_noise_hu(n) for n in noisy_hu]}
        for strength in strengths:
            by_strength[strength][label] = score(blend_all(noisy_hu, outputs, [strength] * len(inputs)),
                                                 data.clean_hu, protocols)
        print(label, levels[label], {s: round(by_strength[s][label][protocols[0]]["psnr"], 2) for s in strengths})
    auto = fit_auto(levels, by_strength, strengths, protocols[0])
    table = StrengthTable(tuple(tuple(p) for p in auto["points"]), recorded_tensors_sha256(model_dir))
    auto_scores = {}
    for label, level in levels.items():
        chosen = [table.strength_for(n) if n is not None else DEFAULT_STRENGTH for n in level["slice_noise_hu"]]
        auto_scores[label] = {**score(blend_all(inputs_hu[label], outputs_hu[label], chosen), data.clean_hu, protocols),
                              "chosen_strengths": [round(c, 3) for c in chosen]}
    best_by_level = {k: by_strength[v["best_strength"]][k] for k, v in auto["levels"].items()}
    auto["score"] = {"auto": rule_score(auto_scores, protocols), f"strength {max(strengths):g}": rule_score(by_strength[max(strengths)], protocols),
                     "per-level best grid strength (oracle)": rule_score(best_by_level, protocols)}
    auto["by_level"] = auto_scores
    result = {
        "config": str(args.config), "model": model_spec, "tensors_sha256": table.tensors_sha256,
        "validation_slices": list(data.sources), "levels": levels,
        "by_strength": {str(s): {"levels": v, "selection_score": rule_score(v, protocols)} for s, v in by_strength.items()},
        "auto": auto,
    }
    best = max(strengths, key=lambda s: result["by_strength"][str(s)]["selection_score"])
    result["best_strength"] = best
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for s in strengths:
        print(f"strength {s:g}: selection score {result['by_strength'][str(s)]['selection_score']:.3f}")
    print(f"best strength by the recipe's selection rule: {best:g}")
    for label, level in auto["levels"].items():
        print(f"{label}: median noise {level['median_noise_hu']} HU, best {level['best_strength']:g}, auto "
              f"{auto_scores[label]['chosen_strengths']}, {protocols[0]} PSNR auto {auto_scores[label][protocols[0]]['psnr']:.2f}"
              f" / best {best_by_level[label][protocols[0]]['psnr']:.2f} / 1.0 {by_strength[max(strengths)][label][protocols[0]]['psnr']:.2f}")
    print(f"table points {auto['points']}; selection score {auto['score']}")
    if args.write_table:
        fitted_on = {"config": str(args.config), "validation_slices": list(data.sources), "levels": list(levels),
                     "protocol": protocols[0], "strengths": strengths, "report": str(output)}
        command = shlex.join(["python", "scripts/choose_strength.py", *sys.argv[1:]])
        print(f"wrote {write_strength_table(model_dir, auto['points'], fitted_on, command)}")


if __name__ == "__main__":
    main()
