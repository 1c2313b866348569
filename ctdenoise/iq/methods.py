"""The methods ``ctdenoise iq`` compares: the model at several strengths and non-local means.

The model runs once per stack at strength 1; every strength is the blend ``input + s * (output - input)`` that
``--strength`` applies (:func:`ctdenoise.runtime.denoise.blend_strength`), so a sweep over strengths costs one forward
pass. NLM is the evaluation's baseline (:func:`ctdenoise.evaluate.methods.classical_method`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctdenoise.iq.protocol import IQMethod


class _OnePass:
    """The model's strength-1 output of the last stack it was given (keyed by the stack's bytes)."""

    def __init__(self, denoise) -> None:
        self._denoise = denoise
        self._key: str | None = None
        self._output: np.ndarray | None = None

    def __call__(self, hu: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(hu, dtype=np.float32)
        key = hashlib.sha1(array.tobytes()).hexdigest() + str(array.shape)
        if self._output is None or key != self._key:
            self._output, self._key = np.asarray(self._denoise(array), dtype=np.float32), key
        return self._output


def strength_name(strength: float) -> str:
    return f"model s={strength:g}"


def model_methods(
    spec: str | Path, strengths: Sequence[float], *, settings=None, clip_weights: Path | None = None,
) -> list[IQMethod]:
    """The model ``spec`` (shipped name or checkpoint folder, as ``--model``) at each of ``strengths``, named
    ``"model s=<strength>"``, run with ``settings`` (an :class:`~ctdenoise.runtime.settings.InferenceSettings`, default
    its defaults; its strength is ignored); one forward pass per stack serves them all."""
    from dataclasses import replace

    from ctdenoise.runtime.denoise import denoise_hu
    from ctdenoise.runtime.prepare import load_prepared
    from ctdenoise.runtime.settings import InferenceSettings

    settings = replace(settings or InferenceSettings(), strength=1.0)
    model = load_prepared(spec, settings, clip_weights=clip_weights)  # prepared once for every stack
    full = _OnePass(lambda hu: denoise_hu(model, hu))

    def at(strength: float):
        def denoise(hu: np.ndarray) -> np.ndarray:
            hu = np.asarray(hu, dtype=np.float32)
            return hu if strength == 0 else hu + np.float32(strength) * (full(hu) - hu)

        return denoise

    return [IQMethod(strength_name(s), at(s), float(s), f"model {spec} at strength {s:g}")
            for s in sorted(set(float(s) for s in strengths))]


def nlm_method() -> IQMethod:
    """Non-local means as the evaluation runs it (noise sigma estimated per slice, h = 1.2 sigma)."""
    from ctdenoise.evaluate.methods import classical_method

    nlm = classical_method("nlm")
    return IQMethod("nlm", nlm.denoise, None, nlm.description)
