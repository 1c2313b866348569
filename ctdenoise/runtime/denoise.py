"""Slice-by-slice denoising of HU volumes with a prepared model: batching, device transfers, bounded memory.

The model sees one axial slice at a time in the model range (:func:`ctdenoise.intensity.hu_to_unit`), or, for
a 2.5-D model (``context_slices`` 3), the slices below, at and above it, the end slices standing in for missing
neighbours (:func:`ctdenoise.model.context_indices`; a one-slice series gives its slice three times);
:func:`denoise_hu` returns HU in the input's shape and geometry. Host memory beyond the input and the
output array is bounded by one batch of slices (inputs, activations and outputs), whatever the number
of slices: a 512x512x600 series is processed in ``ceil(600 / batch_size)`` independent steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ctdenoise.errors import ConfigError
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.model.context import context_indices, context_slices_of
from ctdenoise.runtime.prepare import PreparedModel, prepare
from ctdenoise.runtime.settings import InferenceSettings, resolve_strength
from ctdenoise.runtime.transfer import BatchTransfer

if TYPE_CHECKING:
    from ctdenoise.io import Volume


def blend_strength(noisy: torch.Tensor, denoised: torch.Tensor, strength: float) -> torch.Tensor:
    """``noisy + strength * (denoised - noisy)`` in HU: exactly ``noisy`` at 0 and exactly ``denoised`` at 1."""
    return torch.lerp(noisy, denoised.to(noisy.dtype), float(strength))


def run_settings(model: PreparedModel | nn.Module, settings: InferenceSettings | None) -> InferenceSettings:
    """The settings a call runs with: ``settings``, or a prepared model's own. A prepared model refuses
    ``settings`` that would run it differently (they may change the strength only): :class:`ConfigError`."""
    if not isinstance(model, PreparedModel):
        return settings or InferenceSettings()
    if settings is None:
        return model.settings
    if not model.settings.same_run(settings):
        raise ConfigError("settings", f"the model was prepared for {model.settings}, not {settings}; prepare it "
                          "again (ctdenoise.runtime.prepare.prepare) to run it differently")
    return settings


def denoise_hu(
    model: PreparedModel | nn.Module,
    hu: np.ndarray,
    settings: InferenceSettings | None = None,
    progress: Callable[[int], None] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Denoise a HU array of shape (slices, rows, cols) or (rows, cols) with ``model``.

    ``model`` is a :class:`~ctdenoise.runtime.prepare.PreparedModel` (prepare once, call many times; then
    ``settings`` may only change the strength, default: the model's own settings) or a bare network, prepared
    for ``settings`` (default :class:`InferenceSettings`) by this call alone (a copy; the network is unchanged).
    Returns float32 HU of the same shape: ``out`` (a float32 array of that shape) when given, filled in
    slice order, else a new array. The model runs under ``torch.inference_mode``, so the result is
    deterministic for a given device and precision. ``progress`` (if given) is called with the number of
    slices finished after each batch, once those slices are in the output array (slices ``0 .. total-1``
    are then final). The output is the blend of input and model output that the strength asks for
    (:func:`blend_strength`; a strength table is applied to the whole array as one series,
    :func:`~ctdenoise.runtime.settings.resolve_strength`); at strength 0 the model is not run (nor prepared)
    and the output equals the input.

    A 2.5-D model (``config.context_slices`` S = 3) gets, for slice i, the slices ``i - 1, i, i + 1`` of ``hu``
    (:func:`ctdenoise.model.context_indices`: at the first and last slice the missing neighbour is that slice
    itself, and a single slice is given three times); its output is slice i, and the strength blends it with
    slice i of the input. The whole array is one series: call it on a whole volume, not on chunks of one, or the
    chunks' end slices lose their real neighbours.
    """
    array = np.asarray(hu, dtype=np.float32)
    if array.ndim == 2:
        return denoise_hu(model, array[None], settings, progress, None if out is None else out[None])[0]
    if array.ndim != 3:
        raise ValueError(f"expected a (slices, rows, cols) HU array, got shape {array.shape}")
    if out is not None and (out.shape != array.shape or out.dtype != np.float32):
        raise ValueError(f"out must be a float32 array of shape {array.shape}, got {out.dtype} {out.shape}")
    settings = resolve_strength(run_settings(model, settings), array)
    output = np.empty_like(array) if out is None else out
    if settings.strength == 0:
        output[...] = array
        if progress is not None and array.shape[0]:
            progress(array.shape[0])
        return output
    runner = model if isinstance(model, PreparedModel) else prepare(model, settings)
    context = context_slices_of(runner.network)
    stacked = context_indices(array.shape[0], context) if context > 1 else None
    pad_to = None if runner.fixed_batch_size is None else runner.fixed_batch_size * context
    transfer = BatchTransfer(runner.device, (runner.batch_size * context, *array.shape[1:]))
    with torch.inference_mode():
        for start in range(0, array.shape[0], runner.batch_size):
            stop = min(start + runner.batch_size, array.shape[0])
            slices = array[start:stop] if stacked is None else array[stacked[start:stop].ravel()]
            batch = transfer.upload(slices, pad_to=pad_to)  # (n * context, rows, cols): slice-major stacks
            stacks = batch.reshape(-1, context, *batch.shape[1:])
            clean = unit_to_hu(runner(hu_to_unit(stacks))).squeeze(1)
            if settings.strength != 1:
                clean = blend_strength(stacks[:, context // 2], clean, settings.resolved_strength)
            finished = transfer.download(clean[: stop - start], output[start:stop])
            if progress is not None and finished:
                progress(finished)
        finished = transfer.flush()
        if progress is not None and finished:
            progress(finished)
    return output


def denoise_volume(
    model: PreparedModel | nn.Module,
    volume: Volume,
    settings: InferenceSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> Volume:
    """Denoise every axial slice of ``volume`` with ``model`` as :func:`denoise_hu` does; the result keeps its
    geometry and DICOM sources."""
    return volume.with_hu(denoise_hu(model, volume.hu, settings, progress))
