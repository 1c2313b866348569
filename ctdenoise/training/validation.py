"""Validation during training: fixed noisy versions of the validation slices, scored under metric protocols."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.metrics import compute_metrics
from ctdenoise.model.context import context_slices_of
from ctdenoise.training.config import ValidationConfig
from ctdenoise.training.data import CTSlice, context_neighbours
from ctdenoise.training.pairs import noisy_unit, simulate_slice


@dataclass(frozen=True)
class ValidationSet:
    """Validation slices: clean HU references and, per noise level, their noisy inputs on the model scale.

    ``noisy[label]`` holds one input per slice for the level of that label (made once, seeded). For a 2.5-D model
    (built with ``context_slices`` 3) ``context[label]`` holds each slice's (3, rows, cols) input: the slices below
    and above it in the same crop, with noise of their own, around the very ``noisy[label]`` input a 2-D model gets
    (so 2-D and 2.5-D models are scored on the same centre inputs). Empty for a 2-D set.
    """

    clean_hu: tuple[np.ndarray, ...]
    noisy: dict[str, tuple[torch.Tensor, ...]]
    sources: tuple[str, ...]
    context: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def model_input(self, label: str, index: int, model: nn.Module) -> torch.Tensor:
        """The (1, S, rows, cols) input of slice ``index`` at level ``label`` for ``model`` (S: its
        ``context_slices``); ValueError when the set was built without the neighbours a 2.5-D model needs."""
        context = context_slices_of(model)
        if context == 1:
            return self.noisy[label][index][None, None]
        if label not in self.context or self.context[label][index].shape[0] != context:
            raise ValueError(f"the validation set was built without the {context} slices per input this model reads; "
                             f"build it with build_validation_set(..., context_slices={context})")
        return self.context[label][index][None]


def build_validation_set(slices: list[CTSlice], config: ValidationConfig, context_slices: int = 1) -> ValidationSet:
    """Pick at most ``config.max_slices`` evenly spaced slices, centre-crop, add each of ``config.levels`` (seeded).

    With ``context_slices`` 3 each picked slice's input also gets its neighbours in ``slices``
    (:func:`~ctdenoise.training.data.context_neighbours`; an end slice stands in for a missing one and is then the
    same noisy input): a physics neighbour shares the slice's dose, kernel and bowtie (one scan) and has its own noise
    (seeded by level, slice and neighbour), a Gaussian one its own draw. The inputs of the picked slices themselves
    are those a 2-D set gets.
    """
    picked = list(range(len(slices)))
    if len(slices) > config.max_slices:
        picked = np.linspace(0, len(slices) - 1, config.max_slices).round().astype(int).tolist()
    neighbours = context_neighbours(slices, context_slices) if context_slices > 1 else None
    every_slice, slices = slices, [slices[i] for i in picked]
    windows = [_centre(s.hu.shape, config.crop) for s in slices]
    clean = tuple(s.hu[window] for s, window in zip(slices, windows))
    noisy: dict[str, tuple[torch.Tensor, ...]] = {}
    context: dict[str, tuple[torch.Tensor, ...]] = {}
    for level_index, level in enumerate(config.levels):
        inputs, stacks = [], []
        for index, (ct_slice, window) in enumerate(zip(slices, windows)):
            rng = np.random.default_rng([config.seed, level_index, index])
            noisy_hu = simulate_slice(ct_slice, level, rng) if level.uses_physics else None
            clean_unit = hu_to_unit(torch.from_numpy(clean[index]))
            inputs.append(noisy_unit(clean_unit, None if noisy_hu is None else noisy_hu[window], level, rng).float())
            if neighbours is None:
                continue
            stack = []
            for offset, position in enumerate(neighbours[picked[index]], start=1):
                if position == picked[index]:
                    stack.append(inputs[-1])
                    continue
                other = every_slice[position]
                own = np.random.default_rng([config.seed, level_index, index, offset])
                scan = np.random.default_rng([config.seed, level_index, index])  # the centre's dose, kernel, bowtie
                other_hu = simulate_slice(other, level, own, scan)[window] if level.uses_physics else None
                stack.append(noisy_unit(hu_to_unit(torch.from_numpy(other.hu[window])), other_hu, level, own).float())
            stacks.append(torch.stack(stack))
        noisy[level.label] = tuple(inputs)
        if neighbours is not None:
            context[level.label] = tuple(stacks)
    return ValidationSet(clean, noisy, tuple(s.source for s in slices), context)


@torch.no_grad()
def evaluate(model: nn.Module | None, data: ValidationSet, protocols: tuple[str, ...], device: torch.device) -> dict:
    """Mean PSNR/SSIM/RMSE over the validation slices: ``{level: {protocol: {metric: value}}}``.

    ``model=None`` scores the noisy inputs themselves (the baseline). The model is run in eval mode
    and put back in the mode it was in; a 2.5-D model gets each slice with its neighbours
    (:meth:`ValidationSet.model_input`).
    """
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    results = {}
    for label, inputs in data.noisy.items():
        scores: dict[str, dict[str, list[float]]] = {p: {"psnr": [], "ssim": [], "rmse_hu": []} for p in protocols}
        for index, (noisy, clean_hu) in enumerate(zip(inputs, data.clean_hu)):
            if model is None:
                output = noisy
            else:
                output = model(data.model_input(label, index, model).to(device))[0, 0].float().cpu()
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
