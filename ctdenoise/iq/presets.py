"""Measure a model's strength presets (``presets.json``, :mod:`ctdenoise.strength_presets`) on the digital phantom.

The phantom (:class:`~ctdenoise.iq.phantom.DigitalPhantom`) is scanned ``realisations`` times at a quarter dose with
the ``standard`` kernel (:func:`~ctdenoise.iq.protocol.scan_phantom`, the scans ``ctdenoise iq`` draws for the same
seed); the model runs once per scan stack and every strength of the grid 0, 0.05 ... 1 is its blend with the input
(:func:`ctdenoise.iq.methods.model_methods`). The noise of every grid strength is measured in the uniform ROIs
(:func:`~ctdenoise.iq.noise.noise_only_images`, :func:`~ctdenoise.iq.noise.measure_noise`); each preset is the
smallest grid strength that removes its target share of the input's noise (:func:`choose_strength`), and at the
chosen strengths the whole protocol is measured (:func:`~ctdenoise.iq.protocol.measure_methods`: noise, NPS, TTF50
of every rod, d').
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ctdenoise import __version__
from ctdenoise.iq.detectability import DiskTask
from ctdenoise.iq.methods import model_methods
from ctdenoise.iq.noise import measure_noise, noise_only_images
from ctdenoise.iq.phantom import DigitalPhantom
from ctdenoise.iq.protocol import IQMethod, PhantomProtocol, measure_methods, scan_phantom
from ctdenoise.strength_presets import PRESET_TARGETS, PRESETS_FORMAT

log = logging.getLogger("ctdenoise.iq")

GRID_STEP = 0.05
PRESET_KERNEL = "standard"
PRESET_DOSE = 0.25


def strength_grid(step: float = GRID_STEP) -> list[float]:
    """The strengths 0, ``step``, ... 1 (``step`` must divide 1)."""
    count = round(1.0 / step)
    if count < 1 or abs(count * step - 1.0) > 1e-9:
        raise ValueError(f"the grid step {step} does not divide 1")
    return [round(i / count, 6) for i in range(count + 1)]


def choose_strength(curve: Sequence[tuple[float, float]], target_percent: float) -> tuple[float, bool]:
    """The smallest strength of ``curve`` ((strength, noise reduction in percent of the input's noise), any
    order) whose reduction reaches ``target_percent``, and True; (1.0, False) when none does."""
    for strength, reduction in sorted(curve):
        if reduction >= target_percent:
            return float(strength), True
    return 1.0, False


def _reduction(noise_hu: float, input_noise_hu: float) -> float:
    return 100.0 * (1.0 - noise_hu / input_noise_hu)


def _summary(record: dict) -> dict[str, Any]:
    """The numbers of a :func:`measure_methods` record that ``presets.json`` keeps."""
    return {
        "noise_hu": record["noise_hu"], "noise_change_percent": record["noise_change_percent"],
        "f_av": record["nps"]["f_av"], "f_av_change_percent": record["nps"]["f_av_change_percent"],
        "ttf50": [{"name": i["name"], "contrast_hu": i["contrast_hu"], "ttf50": i["ttf50"], "ttf50_se": i["ttf50_se"],
                   "ttf50_change_percent": i["ttf50_change_percent"]} for i in record["inserts"]],
        "dprime": record["dprime"], "dprime_npwe": record["dprime_npwe"],
    }


def measure_presets(
    methods: Sequence[IQMethod],
    protocol: PhantomProtocol,
    *,
    tensors_sha256: str,
    command: str,
    model: str = "",
    kernel: str = PRESET_KERNEL,
    dose: float = PRESET_DOSE,
    grid_step: float = GRID_STEP,
) -> dict[str, Any]:
    """The ``presets.json`` content for a model given as ``methods``: one :class:`IQMethod` per strength of
    :func:`strength_grid` (``grid_step``), as :func:`ctdenoise.iq.methods.model_methods` makes them (one forward
    pass serves them all). The phantom of ``protocol`` is scanned ``protocol.realisations`` times at ``dose`` with
    ``kernel`` (seed ``[protocol.seed, 0, 0]``: the scans of ``ctdenoise iq --dose 0.25`` for that seed), the noise
    of every strength measured, each preset of :data:`~ctdenoise.strength_presets.PRESET_TARGETS` chosen
    (:func:`choose_strength`) and measured in full at its strength. ``tensors_sha256``, ``command`` and ``model``
    are recorded as given."""
    grid = strength_grid(grid_step)
    by_strength = {float(m.strength): m for m in methods if m.strength is not None}
    if sorted(by_strength) != grid:
        raise ValueError(f"need one method per strength of the grid {grid}, got {sorted(by_strength)}")
    phantom = protocol.phantom
    layout = phantom.layout()
    scans = scan_phantom(protocol, kernel, dose, seed=[protocol.seed, 0, 0])
    input_noise = measure_noise(noise_only_images(np.asarray(scans, dtype=np.float64)), layout.rois)
    curve: list[tuple[float, float, float]] = []
    for strength in grid:
        output = np.asarray(by_strength[strength].denoise(scans), dtype=np.float64)
        noise = measure_noise(noise_only_images(output), layout.rois)
        curve.append((strength, round(noise, 3), round(_reduction(noise, input_noise), 2)))
        log.info("strength %g: noise %.2f HU (input %.2f HU)", strength, noise, input_noise)
    chosen = {name: choose_strength([(s, r) for s, _, r in curve], target) for name, target in PRESET_TARGETS.items()}
    measured = sorted({strength for strength, _ in chosen.values()})
    records, _ = measure_methods(scans, phantom.pixel_mm, layout, [by_strength[s] for s in measured],
                                 task=protocol.task)
    by_measured = {record["strength"]: record for record in records[1:]}
    presets = {
        name: {"strength": strength, "target_noise_reduction_percent": PRESET_TARGETS[name], "target_reached": reached,
               **_summary(by_measured[strength])}
        for name, (strength, reached) in chosen.items()
    }
    return {
        "format": PRESETS_FORMAT,
        "tensors_sha256": tensors_sha256,
        "model": model,
        "ctdenoise_version": __version__,
        "measured_with": {
            "phantom": {"size_px": phantom.size_px, "pixel_mm": phantom.pixel_mm, "rods": [asdict(r) for r in phantom.rods]},
            "kernel": kernel, "dose": dose, "realisations": protocol.realisations, "seed": protocol.seed,
            "grid_step": grid_step, "task": asdict(protocol.task),
        },
        "command": command,
        "input": _summary(records[0]),
        "noise_curve": [list(point) for point in curve],
        "presets": presets,
    }


def measure_model_presets(
    spec: str | Path, *, realisations: int = 16, seed: int = 0, command: str, settings=None,
    phantom: DigitalPhantom | None = None, task: DiskTask | None = None,
) -> dict[str, Any]:
    """:func:`measure_presets` for the model ``spec`` (shipped name or checkpoint folder), run with ``settings``
    (an :class:`~ctdenoise.runtime.settings.InferenceSettings`, default its defaults), on ``phantom`` (default the
    256 x 256 one of 0.8 mm pixels) with ``realisations`` scans drawn from ``seed``."""
    from ctdenoise.registry import model_label, recorded_tensors_sha256, resolve_model_dir

    protocol = PhantomProtocol(phantom=phantom or DigitalPhantom(), doses=(PRESET_DOSE,), kernels=(PRESET_KERNEL,),
                               realisations=realisations, seed=seed, task=task or DiskTask(),
                               report_dose=PRESET_DOSE)
    methods = model_methods(spec, strength_grid(), settings=settings)
    return measure_presets(methods, protocol, tensors_sha256=recorded_tensors_sha256(resolve_model_dir(spec)),
                           command=command, model=model_label(spec))
