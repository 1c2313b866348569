"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder ``checkpoints/iter_<N>/`` holding the model checkpoint of
:func:`ctdenoise.model.save_checkpoint` (``model.safetensors`` + ``config.json``, the one format of the
CLIPDenoiser and RED-CNN), the optimizer's
tensors (``optimizer.safetensors``: ``state.<param index>.<name>``) and ``training_state.json``
(iteration, optimizer param groups and scalar state, scheduler state, the run's config). The folder
is written under a temporary name and renamed, so a crash never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ctdenoise.errors import CheckpointError
from ctdenoise.io.atomic import atomic_write_dir
from ctdenoise.model import CLIPDenoiser, load_checkpoint, save_checkpoint

STATE_FILE = "training_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
CHECKPOINT_PREFIX = "iter_"
STATE_FORMAT = "ctdenoise-training-state"


def checkpoint_dir(checkpoints: Path, iteration: int) -> Path:
    """The folder of the checkpoint after ``iteration`` completed iterations."""
    return checkpoints / f"{CHECKPOINT_PREFIX}{iteration:07d}"


def save_model(model: nn.Module, directory: Path, summary: dict[str, Any]) -> Path:
    """Write ``model`` (a CLIPDenoiser with its encoder, or a RED-CNN) as a checkpoint folder with ``summary``."""
    return save_checkpoint(model, directory, training_summary=summary, include_encoder=True)


def save_training_state(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    iteration: int,
    config: dict[str, Any],
    summary: dict[str, Any],
) -> Path:
    """Write a complete, resumable checkpoint into ``directory`` and return it.

    The folder is built under a hidden temporary name and renamed onto ``directory``
    (:func:`ctdenoise.io.atomic.atomic_write_dir`, replacing an older one), so a crash leaves the old
    checkpoint or the complete new one.
    """
    tensors, scalars = _split_optimizer_state(optimizer.state_dict())
    state = {
        "format": STATE_FORMAT,
        "iteration": iteration,
        "optimizer": {"param_groups": optimizer.state_dict()["param_groups"], "scalars": scalars},
        "scheduler": scheduler.state_dict(),
        "config": config,
    }
    with atomic_write_dir(directory, overwrite=True) as staging:
        save_model(model, staging, summary)
        save_file(tensors, str(staging / OPTIMIZER_FILE))
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return directory


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The complete checkpoint with the highest iteration under ``checkpoints``, or None."""
    if not checkpoints.is_dir():
        return None
    done = sorted(
        p for p in checkpoints.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).is_file()
    )
    return done[-1] if done else None


def read_state(directory: Path) -> dict[str, Any]:
    """The JSON part of a checkpoint (iteration, optimizer groups, scheduler, config)."""
    path = directory / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable training state: {exc}") from exc
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a ctdenoise training state (format {state.get('format')!r})")
    return state


def load_training_state(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> int:
    """Restore model, optimizer and scheduler from a checkpoint folder; returns its iteration."""
    state = read_state(directory)
    saved = load_checkpoint(directory)
    model.load_state_dict(saved.state_dict())
    if isinstance(model, CLIPDenoiser) and isinstance(saved, CLIPDenoiser):
        model.encoder_weights_sha256 = saved.encoder_weights_sha256
        model.encoder_weights_origin = saved.encoder_weights_origin
    try:
        tensors = load_file(str(directory / OPTIMIZER_FILE))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{directory / OPTIMIZER_FILE}: unreadable optimizer state: {exc}") from exc
    optimizer.load_state_dict(_join_optimizer_state(tensors, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    return int(state["iteration"])


def prune_checkpoints(checkpoints: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recent complete checkpoints."""
    done = sorted(p for p in checkpoints.iterdir() if p.name.startswith(CHECKPOINT_PREFIX))
    for old in done[:-keep]:
        shutil.rmtree(old)


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, dict[str, Any]]]:
    """Tensors of the per-parameter state (for safetensors) and the non-tensor values (for JSON)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, scalars


def _join_optimizer_state(tensors: dict[str, Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_split_optimizer_state` (JSON lists in param groups become tuples again)."""
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()}
        for group in saved["param_groups"]
    ]
    return {"state": state, "param_groups": groups}
