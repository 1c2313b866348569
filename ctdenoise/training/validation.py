"""Validation during training: fixed noisy versions of the validation slices, scored under metric protocols."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.metrics import compute_metrics
from ctdenoise.training.config import ValidationConfig
from ctdenoise.training.data import CTSlice
from ctdenoise.training.pairs import noisy_unit, simulate_slice


@dataclass(frozen=True)
class ValidationSet:
    """Validation slices: clean HU references and, per noise level, their noisy inputs on the model scale.

    ``noisy[label]`` holds one input per slice for the level of that label (made once, seeded).
    """

    clean_hu: tuple[np.ndarray, ...]
    noisy: dict[str, tuple[torch.Tensor, ...]]
    sources: tuple[str, ...]


def build_validation_set(slices: list[CTSlice], config: ValidationConfig) -> ValidationSet:
    """Pick at most ``config.max_slices`` evenly spaced slices, centre-crop, add each of ``config.levels`` (seeded)."""
    if len(slices) > config.max_slices:
        picks = np.linspace(0, len(slices) - 1, config.max_slices).round().astype(int)
        slices = [slices[i] for i in picks]
    windows = [_centre(s.hu.shape, config.crop) for s in slices]
    clean = tuple(s.hu[window] for s, window in zip(slices, windows))
    noisy: dict[str, tuple[torch.Tensor, ...]] = {}
    for level_index, level in enumerate(config.levels):
        inputs = []
        for index, (ct_slice, window) in enumerate(zip(slices, windows)):
            rng = np.random.default_rng([config.seed, level_index, index])
            noisy_hu = simulate_slice(ct_slice, level, rng) if level.uses_physics else None
            clean_unit = hu_to_unit(torch.from_numpy(clean[index]))
            inputs.append(noisy_unit(clean_unit, None if noisy_hu is None else noisy_hu[window], level, rng).float())
        noisy[level.label] = tuple(inputs)
    return ValidationSet(clean, noisy, tuple(s.source for s in slices))


@torch.no_grad()
def evaluate(model: nn.Module | None, data: ValidationSet, protocols: tuple[str, ...], device: torch.device) -> dict:
    """Mean PSNR/SSIM/RMSE over the validation slices: ``{level: {protocol: {metric: value}}}``.

    ``model=None`` scores the noisy inputs themselves (the baseline). The model is run in eval mode
    and put back in the mode it was in.
    """
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    results = {}
    for label, inputs in data.noisy.items():
        scores: dict[str, dict[str, list[float]]] = {p: {"psnr": [], "ssim": [], "rmse_hu": []} for p in protocols}
        for noisy, clean_hu in zip(inputs, data.clean_hu):
            output = noisy if model is None else model(noisy[None, None].to(device))[0, 0].float().cpu()
            pred_hu = unit_to_hu(output.numpy())
            for protocol in protocols:
                result = compute_metrics(pred_hu, clean_hu, protocol)
                for metric in scores[protocol]:
                    scores[protocol][metric].append(float(result[metric]))
        results[label] = {p: {m: float(np.mean(v)) for m, v in metrics.items()} for p, metrics in scores.items()}
    if model is not None:
        model.train(was_training)
    return results


#: PSNR above this counts as this in the selection score: an unchanged clean image scores infinite PSNR,
#: and under ``redcnn`` 50 dB is an RMSE of 1.3 HU, a change no reader sees.
SELECTION_PSNR_CAP_DB: float = 50.0


def selection_score(scores: dict, protocols: tuple[str, ...]) -> float:
    """The pre-stated selection rule: PSNR of the first protocol (capped at :data:`SELECTION_PSNR_CAP_DB`),
    averaged over every validation level."""
    return float(np.mean([min(level[protocols[0]]["psnr"], SELECTION_PSNR_CAP_DB) for level in scores.values()]))


def _centre(shape: tuple[int, ...], crop: int | None) -> tuple[slice, slice]:
    if crop is None:
        return (slice(None), slice(None))
    rows, cols = shape
    top, left = max((rows - crop) // 2, 0), max((cols - crop) // 2, 0)
    return (slice(top, top + crop), slice(left, left + crop))
