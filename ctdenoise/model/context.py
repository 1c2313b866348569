"""The 2.5-D input (``ModelConfig.context_slices``): which slices a model sees, and a 3-slice model that starts as
a 2-D one.

A model with ``context_slices`` S > 1 denoises slice i of a volume from the slices ``i - S//2 .. i + S//2`` (for S = 3:
below, centre, above), stacked along the channel axis in that order; the output is slice i. At the ends of a volume
the missing neighbours are the end slice itself (replicate padding along z), so a volume of one slice gives the model
that slice S times. :func:`context_indices` writes this rule for a whole volume, as inference
(:func:`ctdenoise.runtime.denoise.denoise_hu`) uses it; training and validation hold a list of loaded slices from
many series, and :func:`ctdenoise.training.data.context_neighbours` applies the same rule there (also to a slice
whose neighbour is missing from the list).

:func:`context_model_from_2d` is the warm start: the 2-D model's input convolution goes to the centre slice's input
columns, zeros to the neighbours', every other tensor is copied, so the new model's output equals the 2-D model's
on the centre slice, whatever the neighbours hold, until training changes it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from torch import nn

from ctdenoise.errors import ConfigError
from ctdenoise.model.denoiser import CLIPDenoiser


def context_slices_of(model: nn.Module) -> int:
    """The slices ``model`` takes per output slice: its ``config.context_slices`` (a CLIPDenoiser), else 1 (RED-CNN, a
    network without that setting, a prepared copy's wrapper that forwards ``config``)."""
    config = getattr(model, "config", None)
    return int(getattr(config, "context_slices", 1))


def context_indices(n_slices: int, context_slices: int) -> np.ndarray:
    """The (n_slices, context_slices) indices of the slices stacked for each slice of a volume of ``n_slices``:
    row i is ``i - context_slices // 2 .. i + context_slices // 2`` clipped to the volume (the end slices stand in
    for missing neighbours). ``context_slices`` 1 gives the column ``0 .. n_slices - 1``."""
    if context_slices < 1 or context_slices % 2 == 0:
        raise ValueError(f"context_slices must be odd and >= 1, got {context_slices}")
    if n_slices < 1:
        return np.zeros((0, context_slices), dtype=np.int64)
    half = context_slices // 2
    offsets = np.arange(-half, half + 1)
    return np.clip(np.arange(n_slices)[:, None] + offsets[None, :], 0, n_slices - 1)


def context_model_from_2d(model: CLIPDenoiser, context_slices: int = 3) -> CLIPDenoiser:
    """A new CLIPDenoiser taking ``context_slices`` slices that computes what the 2-D ``model`` computes on the
    centre slice: ``model``'s input convolution weight (3, C, 1, 1) becomes the centre columns of the new one
    (3, C * context_slices, 1, 1), the neighbours' columns are zero, and every other tensor (encoder, decoder,
    BatchNorm statistics) is copied, as are the encoder weights' sha256 and origin. ``model`` is unchanged; the new
    model is in ``model``'s mode. ConfigError (key ``init_model``) when ``model`` is not a 2-D CLIPDenoiser."""
    if not isinstance(model, CLIPDenoiser) or model.config.context_slices != 1:
        held = f"context_slices {model.config.context_slices}" if isinstance(model, CLIPDenoiser) else type(model).__name__
        raise ConfigError("init_model", f"a warm start takes a 2-D CLIPDenoiser (context_slices 1), not a {held}")
    config = dataclasses.replace(model.config, context_slices=context_slices)  # validates context_slices
    state = {key: tensor.detach().clone() for key, tensor in model.state_dict().items()}
    weight = state["input_conv.weight"]  # (3, C, 1, 1)
    channels, centre = config.in_channels, context_slices // 2
    widened = weight.new_zeros((weight.shape[0], config.input_channels, *weight.shape[2:]))
    widened[:, centre * channels:(centre + 1) * channels] = weight
    state["input_conv.weight"] = widened
    result = CLIPDenoiser(config).to(weight.device)
    result.load_state_dict(state)
    result.encoder_weights_sha256 = model.encoder_weights_sha256
    result.encoder_weights_origin = model.encoder_weights_origin
    return result.train(model.training)
