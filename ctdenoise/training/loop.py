"""The training loop: :func:`train` runs a :class:`TrainConfig` in one process or under torchrun (DDP).

Output folder layout (written by rank 0 only):

* ``config.yaml``: the resolved config of the run (checked again on ``resume``);
* ``train_log.jsonl``: one JSON object per line: ``start``, ``train`` (loss, lr, grad norm, time),
  ``validation`` (PSNR/SSIM/RMSE per protocol; the noisy input's scores at iteration 0), ``end``;
* ``checkpoints/iter_<N>/``: resumable checkpoints (:mod:`ctdenoise.training.state`);
* ``model/``: the final model, loadable by ``ctdenoise denoise --model``;
* ``best_model/``: the model at the validation with the best selection score
  (:func:`ctdenoise.training.validation.selection_score`), with that iteration in its summary.

Reproducibility: the batch, its noise and the feature-augmentation noise of iteration ``i`` on rank
``r`` come from generators seeded with ``(seed, r, i)``, so a resumed run continues exactly as an
uninterrupted one would (bit for bit on the same machine and thread count).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import ctdenoise
from ctdenoise.errors import ConfigError, OutputError
from ctdenoise.model import (
    REDCNN,
    CLIPDenoiser,
    context_model_from_2d,
    count_parameters,
    encoder_weights_sha256,
    load_checkpoint,
    read_checkpoint_config,
    resolve_clip_weights,
)
from ctdenoise.training import distributed
from ctdenoise.training.config import OPENAI_WEIGHTS, RANDOM_WEIGHTS, TrainConfig, train_config_from_dict
from ctdenoise.training.data import load_slices, slices_at_least, split_series
from ctdenoise.training.losses import training_loss
from ctdenoise.training.pairs import PairSampler, mixup
from ctdenoise.training.state import (
    checkpoint_dir,
    latest_checkpoint,
    load_training_state,
    prune_checkpoints,
    read_state,
    save_model,
    save_training_state,
)
from ctdenoise.training.validation import build_validation_set, evaluate, selection_score

log = logging.getLogger(__name__)

CONFIG_COPY = "config.yaml"
LOG_FILE = "train_log.jsonl"
CHECKPOINTS = "checkpoints"
MODEL_DIR = "model"
BEST_MODEL_DIR = "best_model"
#: Settings that may change when a run is resumed (they do not change what is learned).
RESUMABLE_CHANGES = ("validation", "checkpoint_every", "keep_checkpoints", "log_every", "device", "num_threads")


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced: the final model folder, the iteration reached, the last validation scores
    (``{level: {protocol: {metric: value}}}``, :func:`ctdenoise.training.validation.evaluate`)."""

    model_dir: Path
    iterations: int
    validation: dict[str, dict[str, dict[str, float]]] | None


def train(config: TrainConfig, output_dir: Path, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a CLIPDenoiser as ``config`` says and write the run into ``output_dir``.

    ``resume=True`` continues from the latest checkpoint in ``output_dir`` (model, optimizer,
    scheduler, iteration); without it an ``output_dir`` that already holds checkpoints is refused
    (OutputError). Under torchrun every rank calls this; only rank 0 writes.
    """
    output_dir = Path(output_dir)
    runtime = distributed.start(config.device)
    try:
        return _Run(config, output_dir, runtime, resume, progress).run()
    finally:
        distributed.stop(runtime)


class _Run:
    """One training run; split into steps so that :func:`train` reads as the recipe."""

    def __init__(
        self, config: TrainConfig, output_dir: Path, runtime: distributed.Runtime, resume: bool, progress: bool
    ) -> None:
        self.config, self.output_dir, self.runtime, self.progress = config, output_dir, runtime, progress
        if config.batch_size % runtime.world_size:
            raise ConfigError("batch_size", f"{config.batch_size} is not divisible by {runtime.world_size} processes")
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.resume_from = self._check_output(resume)
        distributed.barrier(runtime)  # every rank has checked the folder before rank 0 writes into it

    def run(self) -> TrainResult:
        config, runtime = self.config, self.runtime
        started = time.monotonic()
        split = split_series(config.data)
        train_slices = slices_at_least(load_slices(split.train), config.crop_size)
        context = config.model.context_slices if config.architecture == "clipdenoiser" else 1
        sampler = PairSampler(train_slices, config.noise, config.crop_size, config.augment, config.seed, context)
        validation_set = None
        if config.validation.every and runtime.is_main:
            validation_set = build_validation_set(load_slices(split.validation), config.validation, context)
        model, encoder_record = self._model()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            trainable, lr=config.optim.lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.iterations, eta_min=config.optim.lr_min)
        start = 0
        if self.resume_from is not None:
            start = load_training_state(self.resume_from, model=model, optimizer=optimizer, scheduler=scheduler)
            log.info("resumed from %s at iteration %d", self.resume_from, start)
        summary_base = {
            "recipe": config.to_dict(),
            "encoder_weights": encoder_record,
            "data": {
                "train_series": [s.ref.key for s in split.train],
                "train_slices": len(train_slices),
                "validation_series": [s.ref.key for s in split.validation],
                "excluded": list(config.data.exclude),
            },
            "world_size": runtime.world_size,
            "versions": {"ctdenoise": ctdenoise.__version__, "torch": torch.__version__},
        }
        self._write_start(start, summary_base, count_parameters(model))
        if validation_set is not None and start == 0:
            scores = evaluate(None, validation_set, config.validation.protocols, runtime.device)
            self._log({"event": "validation", "iteration": 0, "input": "noisy", "metrics": scores,
                       "selection_score": selection_score(scores, config.validation.protocols)})
            if config.init_model is not None:  # the starting model on the same rule: what fine-tuning has to beat
                scores = evaluate(model, validation_set, config.validation.protocols, runtime.device)
                self._log({"event": "validation", "iteration": 0, "input": "init_model", "metrics": scores,
                           "selection_score": selection_score(scores, config.validation.protocols)})
        net: nn.Module = model
        if runtime.distributed:
            net = DistributedDataParallel(model, device_ids=[runtime.device] if runtime.device.type == "cuda" else None)
        last_scores = self._loop(net, model, optimizer, scheduler, sampler, validation_set, start, summary_base)
        summary = {**summary_base, "iterations": config.iterations, "final_validation": last_scores,
                   "wall_time_s_this_session": round(time.monotonic() - started, 1)}
        model_dir = self.output_dir / MODEL_DIR
        if runtime.is_main:
            save_model(model, model_dir, summary)
            self._log({"event": "end", "iteration": config.iterations, "model_dir": str(model_dir), "wall_time_s": summary["wall_time_s_this_session"]})
        distributed.barrier(runtime)
        return TrainResult(model_dir=model_dir, iterations=config.iterations, validation=last_scores)

    def _loop(self, net, model, optimizer, scheduler, sampler, validation_set, start, summary_base):
        config, runtime = self.config, self.runtime
        local_batch = config.batch_size // runtime.world_size
        bar = tqdm(total=config.iterations, initial=start, unit="it", desc="training",
                   disable=not (self.progress and runtime.is_main), mininterval=2.0)
        losses: list[float] = []
        last_scores = None
        best_score = self._best_score_so_far()
        autocast = torch.autocast(runtime.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
        tick = time.monotonic()
        for iteration in range(start, config.iterations):
            rng = np.random.default_rng([config.seed, runtime.rank, iteration])
            noisy, clean = sampler.batch(local_batch, rng)
            noisy, clean = mixup(noisy, clean, config.augment, rng)
            torch.manual_seed(int(rng.integers(2**63)))  # the model's feature-augmentation noise
            noisy, clean = noisy.to(runtime.device), clean.to(runtime.device)
            with autocast:
                output = net(noisy)
            loss = training_loss(output.float(), clean, config.optim)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], config.optim.grad_clip_norm
            )
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            done = iteration + 1
            bar.update(1)
            if done % config.log_every == 0 or done == config.iterations:
                mean_loss = distributed.mean_over_ranks(float(np.mean(losses)), runtime)
                bar.set_postfix(loss=f"{mean_loss:.5f}")
                self._log({"event": "train", "iteration": done, "loss": mean_loss, "lr": scheduler.get_last_lr()[0],
                           "grad_norm": float(grad_norm), "seconds": round(time.monotonic() - tick, 3)})
                losses, tick = [], time.monotonic()
            if validation_set is not None and (done % config.validation.every == 0 or done == config.iterations):
                last_scores = evaluate(model, validation_set, config.validation.protocols, runtime.device)
                score = selection_score(last_scores, config.validation.protocols)
                self._log({"event": "validation", "iteration": done, "input": "model", "metrics": last_scores,
                           "selection_score": score})
                if best_score is None or score > best_score:
                    best_score = score
                    save_model(model, self.output_dir / BEST_MODEL_DIR,
                               {**summary_base, "iterations": done, "selection_score": score, "final_validation": last_scores})
            if done % config.checkpoint_every == 0 or done == config.iterations:
                self._checkpoint(model, optimizer, scheduler, done, {**summary_base, "iterations_done": done})
        bar.close()
        return last_scores

    def _best_score_so_far(self) -> float | None:
        """The best selection score logged by the run being resumed (None for a fresh run)."""
        log_file = self.output_dir / LOG_FILE
        if self.resume_from is None or not log_file.exists():
            return None
        scores = [record["selection_score"] for record in map(json.loads, log_file.read_text().splitlines())
                  if record.get("event") == "validation" and record.get("input") == "model" and "selection_score" in record]
        return max(scores, default=None)

    def _model(self) -> tuple[CLIPDenoiser | REDCNN, dict[str, Any]]:
        """The denoiser on the device, its encoder set as ``encoder_weights`` says, and a record of which."""
        config = self.config
        torch.manual_seed(config.seed)
        if config.architecture == "redcnn":
            return REDCNN().to(self.runtime.device).train(), {"kind": "none (RED-CNN has no encoder)", "init_seed": config.seed}
        model = CLIPDenoiser(config.model)
        if config.init_model is not None:
            record = self._start_from_model(model, Path(config.init_model))
        elif config.encoder_weights == RANDOM_WEIGHTS:
            record = {"kind": "random", "init_seed": config.seed, "init_torch": torch.__version__}
        else:
            weights = resolve_clip_weights(
                config.model.encoder_name, weights=None if config.encoder_weights == OPENAI_WEIGHTS else config.encoder_weights
            )
            model.load_encoder_weights(weights)
            record = {"kind": "clip", "origin": weights.origin, "sha256": weights.sha256}
        record["initial_encoder_sha256"] = encoder_weights_sha256(
            {k: v for k, v in model.encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
        )
        record["trained"] = config.model.train_encoder
        return model.to(self.runtime.device).train(), record

    def _start_from_model(self, model: CLIPDenoiser, directory: Path) -> dict[str, Any]:
        """Copy every weight of the model folder ``directory`` into ``model``; the record says where they came from.

        A 2-D model folder starts a 2.5-D ``model`` of otherwise the same architecture through its warm start
        (:func:`ctdenoise.model.context_model_from_2d`: the same outputs on the centre slice at iteration 0).

        The encoder's provenance (random initialisation or the CLIP weights it started from) is carried over,
        so a fine-tuned model is labelled as its starting model was. ConfigError if the architectures differ.
        """
        start = load_checkpoint(directory)
        warm_start = (isinstance(start, CLIPDenoiser) and start.config.context_slices == 1
                      and model.config.context_slices > 1
                      and start.config == dataclasses.replace(model.config, context_slices=1))
        if warm_start and isinstance(start, CLIPDenoiser):
            start = context_model_from_2d(start, model.config.context_slices)
        if not isinstance(start, CLIPDenoiser) or start.config != model.config:
            held = start.config.to_dict() if isinstance(start, CLIPDenoiser) else f"a {type(start).__name__}"
            raise ConfigError(
                "init_model", f"{directory} has architecture {held}, but the recipe's model is {model.config.to_dict()}"
            )
        model.load_state_dict(start.state_dict())
        model.encoder_weights_sha256 = start.encoder_weights_sha256
        model.encoder_weights_origin = start.encoder_weights_origin
        started_from = read_checkpoint_config(directory)
        return {
            "kind": "init_model",
            **({"warm_start": f"2-D to {model.config.context_slices} slices (context_model_from_2d)"} if warm_start else {}),
            "init_model": str(directory),
            "init_model_tensors_sha256": started_from["tensors"]["sha256"],
            "init_model_encoder_weights": started_from.get("training_summary", {}).get("encoder_weights"),
        }

    def _check_output(self, resume: bool) -> Path | None:
        """The checkpoint to resume from (None for a fresh run); refuses to overwrite or mix runs."""
        checkpoints = self.output_dir / CHECKPOINTS
        latest = latest_checkpoint(checkpoints)
        if not resume:
            if latest is not None or (self.output_dir / LOG_FILE).exists():
                raise OutputError(self.output_dir, "already holds a training run; pass --resume or choose a new --output")
            return None
        if latest is None:
            raise OutputError(self.output_dir, "--resume given, but there is no checkpoint to resume from")
        _check_same_recipe(train_config_from_dict(read_state(latest)["config"]), self.config, latest)
        return latest

    def _write_start(self, start: int, summary: dict[str, Any], parameters: dict[str, int]) -> None:
        if not self.runtime.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / CONFIG_COPY).write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False), encoding="utf-8")
        self._log({"event": "start", "iteration": start, "resumed": start > 0, "parameters": parameters, **summary})

    def _checkpoint(self, model, optimizer, scheduler, done: int, summary: dict[str, Any]) -> None:
        if self.runtime.is_main:
            checkpoints = self.output_dir / CHECKPOINTS
            checkpoints.mkdir(parents=True, exist_ok=True)
            save_training_state(checkpoint_dir(checkpoints, done), model=model, optimizer=optimizer,
                                scheduler=scheduler, iteration=done, config=self.config.to_dict(), summary=summary)
            prune_checkpoints(checkpoints, self.config.keep_checkpoints)
        distributed.barrier(self.runtime)

    def _log(self, record: dict[str, Any]) -> None:
        if self.runtime.is_main:
            with open(self.output_dir / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def _check_same_recipe(saved: TrainConfig, current: TrainConfig, source: Path) -> None:
    """ConfigError naming the first setting (other than :data:`RESUMABLE_CHANGES`) that differs from the checkpoint's."""
    old, new = _flatten(saved.to_dict()), _flatten(current.to_dict())
    for key in old:
        if key.split(".")[0] not in RESUMABLE_CHANGES and old[key] != new[key]:
            raise ConfigError(key, f"differs from the run being resumed ({old[key]!r} there, {new[key]!r} now)", source=source)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
