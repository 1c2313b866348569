"""The fine-tuning run of ``ctdenoise adapt``: a base model, noisy series, a CPU-time budget -> a model folder.

Steps: read the series (:mod:`ctdenoise.adapt.data`), choose the method (:func:`~ctdenoise.adapt.pairs.choose_method`),
score the base model on the held-out slices (:mod:`ctdenoise.adapt.guard`), fine-tune with AdamW, a warm-up and a cosine
decay (the decoder only: the encoder and its batch-norm statistics stay as the base has them), score the adapted
model, and write the model folder (:mod:`ctdenoise.adapt.model_card`) unless the guard refuses it.

Budget: without ``iterations``, the run times its first steps and plans as many as fit in ``minutes`` after the
reading, the base score and the time the adapted model's score will take. One batch in
:data:`ANCHOR_EVERY` teaches the model to leave the base model's own output (an almost clean image) unchanged,
so it keeps the base model's behaviour on clean images.

Resumable: checkpoints (:mod:`ctdenoise.training.state`) go to ``WORK_DIR/checkpoints`` every
``checkpoint_seconds`` and when a stop is requested (SIGINT/SIGTERM via
:class:`~ctdenoise.jobs.interrupt.StopSignals`); ``resume=True`` continues from the latest one with the plan
(method, iterations, base score) it recorded. The batch of iteration ``i`` comes from a generator seeded with
``(seed, i)``, so a resumed run makes the same batches as an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctdenoise.adapt.data import AdaptData, load_noisy_series
from ctdenoise.adapt.guard import GuardScore, centre_crop, guard_score, refuses
from ctdenoise.adapt.model_card import write_adapted_model
from ctdenoise.adapt.pairs import PairMaker, PairSource, choose_method, measure_texture
from ctdenoise.errors import ConfigError, OutputError
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.jobs.interrupt import StopSignals
from ctdenoise.model import CLIPDenoiser, context_slices_of
from ctdenoise.registry import load_model, recorded_tensors_sha256, resolve_model_dir
from ctdenoise.training.state import (
    checkpoint_dir,
    latest_checkpoint,
    load_training_state,
    prune_checkpoints,
    read_state,
    save_training_state,
)

log = logging.getLogger("ctdenoise.adapt")

ANCHOR_EVERY = 8
WORK_SUFFIX = ".adapt-work"
WARMUP_STEPS = 20
UNPLANNED = 10**9
"""The schedule's length while the first steps are timed (the warm-up is all that applies to them)."""
SAVE_MARGIN_S = 15.0
"""Seconds of the budget kept for writing the model folder."""


@dataclass(frozen=True)
class AdaptSettings:
    """What ``ctdenoise adapt`` does: ``method`` neighbours | recorrupt (None: the default,
    :data:`~ctdenoise.adapt.pairs.DEFAULT_METHOD`); ``minutes`` of wall-clock budget
    (or a fixed number of ``iterations``); at most ``max_slices`` slices; crops of ``crop`` pixels in batches of
    ``batch_size``; AdamW learning rate ``lr`` decayed to ``lr / 100``; ``seed``."""

    method: str | None = None
    minutes: float = 15.0
    iterations: int | None = None
    max_slices: int = 200
    crop: int = 96
    batch_size: int = 4
    lr: float = 5e-5
    seed: int = 0
    checkpoint_seconds: float = 60.0

    def __post_init__(self) -> None:
        for key in ("minutes", "max_slices", "crop", "batch_size", "lr", "checkpoint_seconds"):
            if not getattr(self, key) > 0:
                raise ConfigError(key, f"must be > 0, got {getattr(self, key)}")
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError("iterations", f"must be >= 1, got {self.iterations}")


@dataclass(frozen=True)
class AdaptResult:
    """What a run did: the model folder (None when the guard refused it), the plan and both guard scores."""

    model_dir: Path | None
    method: str
    iterations: int
    base: GuardScore
    adapted: GuardScore
    refused: bool


def work_dir_for(output: Path) -> Path:
    """Where a run keeps its checkpoints: beside the model folder, ``<name>.adapt-work``."""
    return output.with_name(output.name + WORK_SUFFIX)


def adapt(
    inputs: Sequence[Path],
    output: Path,
    base: str | Path | None = None,
    settings: AdaptSettings = AdaptSettings(),
    *,
    resume: bool = False,
    force: bool = False,
    stop: StopSignals | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> AdaptResult:
    """Fine-tune ``base`` (a model name or folder; None: the shipped default) on the noisy series under
    ``inputs`` and write the model folder ``output``, unless the guard refuses it and ``force`` is False
    (then ``model_dir`` is None and nothing is written but the checkpoints). ``on_step(done, planned)`` is
    called after each iteration. OutputError when ``output`` exists or when ``resume`` finds nothing to resume;
    ConfigError (key ``base``, naming the folder) for a 2.5-D base model, which adapt does not support yet."""
    started = time.monotonic()
    output = Path(output)
    if output.exists():
        raise OutputError(output, "already exists; choose a new model folder")
    work = work_dir_for(output)
    resume_from = latest_checkpoint(work / "checkpoints")
    if resume and resume_from is None:
        raise OutputError(work, "--resume given, but there is no checkpoint to resume from")
    if not resume and resume_from is not None:
        raise OutputError(work, "holds an unfinished adaptation; pass --resume, or delete it to start again")
    model = load_model(base)
    base_dir = resolve_model_dir(base)
    if context_slices_of(model) != 1:  # its pairs, guard and outputs are made slice by slice
        raise ConfigError("base", f"{base_dir}: a 2.5-D model (context_slices {context_slices_of(model)}) cannot be "
                          "adapted yet; adapt takes a 2-D model (context_slices 1)")
    base_sha = recorded_tensors_sha256(base_dir)
    data = load_noisy_series(inputs, min_size=settings.crop, max_slices=settings.max_slices)
    try:
        method, why = choose_method(settings.method, data.series)
    except ValueError as error:
        raise ConfigError("method", str(error)) from None
    log.info("%d series, %d slices (%d held out for the guard); method %s (%s)", len(data.series),
             data.slice_count, len(data.held_out_slices()), method, why)
    held_out = [centre_crop(s) for s in data.held_out_slices()]
    rng = np.random.default_rng([settings.seed, 2**31])
    try:
        texture = measure_texture(data.series, rng) if method == "recorrupt" else None
        pairs = PairMaker(data.series, method, settings.crop, texture)
    except ValueError as error:
        raise ConfigError("method", str(error)) from None
    plan: dict[str, Any] = {"settings": asdict(settings), "method": method, "method_reason": why,
                            "base_tensors_sha256": base_sha, "slices": data.slice_count}
    if resume_from is not None:
        saved = read_state(resume_from)["config"]
        _check_same_plan(saved, plan, resume_from)
        plan = saved
        base_score = GuardScore(**plan["base_guard"])
    else:
        tick = time.monotonic()
        base_score = guard_score(held_out, model_outputs(model, held_out))
        plan["base_guard"] = asdict(base_score)
        plan["guard_seconds"] = time.monotonic() - tick
    anchor = copy.deepcopy(model).eval()
    prepare_for_fine_tuning(model)
    optimizer = new_optimizer(model, settings)
    done = 0
    if resume_from is not None:
        scheduler = new_scheduler(optimizer, int(plan["iterations"]))
        done = load_training_state(resume_from, model=model, optimizer=optimizer, scheduler=scheduler)
        prepare_for_fine_tuning(model)
        log.info("resumed at iteration %d of %d", done, plan["iterations"])
    else:
        planned = settings.iterations
        scheduler = new_scheduler(optimizer, planned or UNPLANNED)
        if planned is None:  # two timed steps, then as many as the budget holds
            budget = settings.minutes * 60 - (time.monotonic() - started) - plan["guard_seconds"] - SAVE_MARGIN_S
            tick = time.monotonic()
            for step in range(2):
                train_step(model, anchor, optimizer, scheduler, pairs, settings, step)
            per_step = (time.monotonic() - tick) / 2
            done = 2
            planned = done + max(0, int((budget - 2 * per_step) / per_step))
            scheduler.lr_lambdas[0].total = planned  # type: ignore[attr-defined]
        plan["iterations"] = planned
    iterations = int(plan["iterations"])
    last_save = time.monotonic()
    while done < iterations:
        if stop is not None and stop.signum is not None:
            _save(work, model, optimizer, scheduler, done, plan)
            stop.check()
        train_step(model, anchor, optimizer, scheduler, pairs, settings, done)
        done += 1
        if on_step is not None:
            on_step(done, iterations)
        if time.monotonic() - last_save > settings.checkpoint_seconds and done < iterations:
            _save(work, model, optimizer, scheduler, done, plan)
            last_save = time.monotonic()
    _save(work, model, optimizer, scheduler, done, plan)  # a refused run can be written later with --resume --force
    model.eval()
    adapted_score = guard_score(held_out, model_outputs(model, held_out))
    refused = refuses(base_score, adapted_score)
    log.info("guard on %d held-out slices (HU; structure removed + bias - noise removed, lower is better): "
             "base %s, adapted %s", len(held_out), base_score.to_dict(), adapted_score.to_dict())
    result = AdaptResult(None, method, iterations, base_score, adapted_score, refused)
    if refused and not force:
        return result
    write_adapted_model(model, output, base_dir, _summary(plan, data, base_score, adapted_score, refused, base))
    shutil.rmtree(work, ignore_errors=True)
    return AdaptResult(output, method, iterations, base_score, adapted_score, refused)


def model_outputs(model: torch.nn.Module, slices: list[np.ndarray]) -> list[np.ndarray]:
    """The model's output (HU) for each slice, at full strength, in fp32 on the CPU (the device it trains on)."""
    model.eval()
    with torch.inference_mode():
        return [unit_to_hu(model(hu_to_unit(torch.from_numpy(image)[None, None]))).numpy()[0, 0] for image in slices]


def prepare_for_fine_tuning(model: CLIPDenoiser) -> None:
    """Training mode for the decoder; the encoder frozen, its batch-norm statistics kept (eval mode)."""
    model.train()
    model.encoder.requires_grad_(False)
    model.encoder.eval()


def new_optimizer(model: CLIPDenoiser, settings: AdaptSettings) -> torch.optim.Optimizer:
    """AdamW over the parameters that train (call :func:`prepare_for_fine_tuning` first)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=1e-4)


class WarmupCosine:
    """The learning-rate factor of iteration ``i``: a linear warm-up over :data:`WARMUP_STEPS` (AdamW's first
    steps move every weight by about the full rate at once: two such steps shifted a fine-tuned model's output
    by 10 HU), then a cosine decay to a hundredth at ``total``. An object, not a function, so that
    ``LambdaLR.state_dict`` saves ``total`` with the checkpoint."""

    def __init__(self, total: int) -> None:
        self.total = total

    def __call__(self, i: int) -> float:
        progress = min(i, self.total) / max(1, self.total)
        return min(1.0, (i + 1) / WARMUP_STEPS) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def new_scheduler(optimizer: torch.optim.Optimizer, iterations: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up, then cosine decay to a hundredth of the rate over ``iterations`` (:class:`WarmupCosine`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(iterations))


def train_step(model: CLIPDenoiser, anchor: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, pairs: PairSource, settings: AdaptSettings,
               iteration: int) -> float:
    """One AdamW step on the batch of ``iteration`` (an anchor batch every :data:`ANCHOR_EVERY`); L1 loss."""
    rng = np.random.default_rng([settings.seed, iteration])
    source, target = pairs.batch(settings.batch_size, rng)
    if iteration % ANCHOR_EVERY == ANCHOR_EVERY - 1:
        with torch.no_grad():
            source = target = anchor(source).clamp(0.0, 1.0)
    torch.manual_seed(int(rng.integers(2**63)))  # the feature-augmentation noise
    loss = torch.nn.functional.l1_loss(model(source), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 0.01)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _save(work: Path, model: CLIPDenoiser, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, done: int, plan: dict[str, Any]) -> None:
    checkpoints = work / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    save_training_state(checkpoint_dir(checkpoints, done), model=model, optimizer=optimizer, scheduler=scheduler,
                        iteration=done, config=plan, summary={"adapt_iterations_done": done})
    prune_checkpoints(checkpoints, 1)


def _check_same_plan(saved: dict[str, Any], current: dict[str, Any], source: Path) -> None:
    """ConfigError naming the first setting of the run being resumed that differs now."""
    for key in ("base_tensors_sha256", "slices"):
        if saved.get(key) != current[key]:
            raise ConfigError(key, f"differs from the run being resumed ({saved.get(key)!r} there, {current[key]!r} now)",
                              source=source)
    for key, value in current["settings"].items():
        if key != "checkpoint_seconds" and saved["settings"].get(key) != value:
            raise ConfigError(key, f"differs from the run being resumed ({saved['settings'].get(key)!r} there, "
                              f"{value!r} now)", source=source)


def _summary(plan: dict[str, Any], data: AdaptData, base: GuardScore, adapted: GuardScore, refused: bool,
             base_spec: str | Path | None) -> dict[str, Any]:
    """The adaptation's record for config.json and the model card: counts and settings, no names or UIDs."""
    return {
        "adapted_from": {"model": str(base_spec or "default"), "tensors_sha256": plan["base_tensors_sha256"]},
        "method": plan["method"], "method_reason": plan["method_reason"],
        "series": len(data.series), "slices": data.slice_count, "held_out_slices": len(data.held_out_slices()),
        "skipped_inputs": len(data.skipped),
        "slice_spacing_mm": sorted({round(s.slice_mm, 3) for s in data.series if math.isfinite(s.slice_mm)}),
        "iterations": int(plan["iterations"]), "settings": plan["settings"],
        "guard": {"base": base.to_dict(), "adapted": adapted.to_dict(), "refused": refused, "forced": refused},
    }
