"""Fitting a model's strength: scores at several strengths on a recipe's validation slices, and its auto table.

:func:`fit_strength` builds the validation set of a training recipe exactly as training does (same slices, crops,
noise levels and seeds; :func:`ctdenoise.training.validation.build_validation_set`; never the test slices), runs
the model once per input (a 2.5-D model with the input's neighbours, :meth:`ValidationSet.model_input`), blends
its output with the (centre) input at each strength
(:func:`ctdenoise.runtime.denoise.blend_strength`) and scores every level under the recipe's protocols, plus the
body RMSE. The selection score of each strength is the recipe's rule
(:func:`ctdenoise.training.validation.selection_score`); the strength with the best score is ``best_strength``.

The ``auto`` fit: each validation input's estimated noise (:func:`ctdenoise.noise_estimate.noise_hu_local_std_mode`,
the estimator of ``report.json`` and ``--strength auto``) and, per level, the median of those estimates and
the strength of the grid with the best mean PSNR under the recipe's first protocol (also each slice's own
best). The table's points are the levels' (median noise, best strength), made non-decreasing by isotonic
regression (:func:`ctdenoise.strength_table.fit_strength_points`). How well it does is measured on the same
slices (in-sample): each input at the table's strength for its own estimated noise (the default strength where
it has none), against the levels' best grid strength and strength 1, under the same rule.
``ctdenoise strength fit`` (:mod:`ctdenoise.cli.strength`) runs it and can write the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctdenoise.intensity import unit_to_hu
from ctdenoise.metrics import body_rmse_hu, compute_metrics
from ctdenoise.model.context import context_slices_of
from ctdenoise.noise_estimate import noise_hu_local_std_mode
from ctdenoise.registry import load_model, recorded_tensors_sha256, resolve_model_dir
from ctdenoise.runtime.denoise import blend_strength
from ctdenoise.runtime.options import DEFAULT_STRENGTH
from ctdenoise.strength_table import StrengthTable, fit_strength_points
from ctdenoise.training.config import load_train_config
from ctdenoise.training.data import load_slices, split_series
from ctdenoise.training.validation import build_validation_set, selection_score

#: The strengths scored when the caller does not choose: 0, 0.1 ... 1.
STRENGTH_GRID = tuple(round(0.1 * k, 1) for k in range(11))


def score(blended: list[np.ndarray], clean: tuple[np.ndarray, ...], protocols: tuple[str, ...]) -> dict[str, Any]:
    """Per-slice metrics of ``blended`` against ``clean`` under each protocol, their means, and the body RMSE."""
    per_slice = {p: [compute_metrics(b, c, p) for b, c in zip(blended, clean)] for p in protocols}
    scores: dict[str, Any] = {p: {m: float(np.mean([r[m] for r in results])) for m in ("psnr", "ssim", "rmse_hu")}
                              for p, results in per_slice.items()}
    scores["rmse_body_hu"] = float(np.mean([body_rmse_hu(b, c) for b, c in zip(blended, clean)]))
    scores["slice_psnr"] = [float(r["psnr"]) for r in per_slice[protocols[0]]]
    return scores


def blend_all(noisy_hu: list[np.ndarray], outputs: list[np.ndarray], strengths: list[float]) -> list[np.ndarray]:
    """Each input blended with its model output at its strength."""
    return [blend_strength(torch.from_numpy(n), torch.from_numpy(o), s).numpy()
            for n, o, s in zip(noisy_hu, outputs, strengths)]


def rule_score(by_level: dict[str, Any], protocols: tuple[str, ...]) -> float:
    """The recipe's selection score of ``{level: scores}``."""
    return selection_score({k: {p: v[p] for p in protocols} for k, v in by_level.items()}, protocols)


def fit_auto(levels: dict[str, Any], by_strength: dict[float, Any], strengths: list[float], protocol: str) -> dict[str, Any]:
    """The table's points from the levels' median input noise and best grid strength (mean ``protocol`` PSNR),
    with each slice's own best strength for reference."""
    fit_levels: dict[str, dict[str, Any]] = {}
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
def fit_strength(config_path: Path, model_spec: str, strengths: list[float]) -> dict[str, Any]:
    """Score the model ``model_spec`` (shipped name or checkpoint folder) at ``strengths`` on the validation set of
    the recipe ``config_path`` and fit its auto table; returns the report (JSON-ready): ``levels``,
    ``by_strength`` (scores and selection score per strength), ``auto`` (the table's points, its fit and scores),
    ``best_strength`` and the model's ``tensors_sha256``."""
    model_dir = resolve_model_dir(model_spec)
    strengths = sorted(set(strengths))
    config = load_train_config(config_path)
    protocols = tuple(config.validation.protocols)
    model = load_model(model_spec).eval()
    data = build_validation_set(load_slices(split_series(config.data).validation), config.validation,
                                context_slices_of(model))
    levels: dict[str, dict[str, Any]] = {}
    inputs_hu, outputs_hu = {}, {}
    by_strength: dict[float, dict[str, Any]] = {s: {} for s in strengths}
    for label, inputs in data.noisy.items():
        noisy_hu = [unit_to_hu(x.numpy()) for x in inputs]
        outputs = [unit_to_hu(model(data.model_input(label, i, model))[0, 0].float().numpy()) for i in range(len(inputs))]
        inputs_hu[label], outputs_hu[label] = noisy_hu, outputs
        levels[label] = {"input_noise_hu": noise_hu_local_std_mode(np.stack(noisy_hu)),
                         "slice_noise_hu": [noise_hu_local_std_mode(n) for n in noisy_hu]}
        for strength in strengths:
            by_strength[strength][label] = score(blend_all(noisy_hu, outputs, [strength] * len(inputs)),
                                                 data.clean_hu, protocols)
    auto = fit_auto(levels, by_strength, strengths, protocols[0])
    table = StrengthTable(tuple(tuple(p) for p in auto["points"]), recorded_tensors_sha256(model_dir))
    auto_scores = {}
    for label, level in levels.items():
        chosen = [table.strength_for(n) if n is not None else DEFAULT_STRENGTH for n in level["slice_noise_hu"]]
        auto_scores[label] = {**score(blend_all(inputs_hu[label], outputs_hu[label], chosen), data.clean_hu, protocols),
                              "chosen_strengths": [round(c, 3) for c in chosen]}
    best_by_level = {k: by_strength[v["best_strength"]][k] for k, v in auto["levels"].items()}
    auto["score"] = {"auto": rule_score(auto_scores, protocols),
                     f"strength {max(strengths):g}": rule_score(by_strength[max(strengths)], protocols),
                     "per-level best grid strength (oracle)": rule_score(best_by_level, protocols)}
    auto["by_level"] = auto_scores
    result: dict[str, Any] = {
        "config": str(config_path), "model": model_spec, "tensors_sha256": table.tensors_sha256,
        "validation_slices": list(data.sources), "levels": levels,
        "by_strength": {str(s): {"levels": v, "selection_score": rule_score(v, protocols)} for s, v in by_strength.items()},
        "auto": auto,
    }
    result["best_strength"] = max(strengths, key=lambda s: result["by_strength"][str(s)]["selection_score"])
    return result
