"""Safe checkpoints: a folder with ``model.safetensors`` (tensors) and ``config.json`` (everything else), one
format for every architecture of :mod:`ctdenoise.model.architectures` (the CLIPDenoiser and RED-CNN).

Nothing is ever unpickled. ``config.json`` records the architecture's name and settings, the input
normalisation, a training summary and the sha256 of ``model.safetensors`` (checked on load: a modified file
is refused). A CLIPDenoiser's also records its CLIP encoder name and the canonical sha256 and origin of the
CLIP weights the model was built on: its checkpoint either carries the frozen encoder (self-contained) or
only references its weights by sha256; loading then needs the same CLIP weights and refuses any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

import ctdenoise
from ctdenoise.errors import CheckpointError, ConfigError
from ctdenoise.intensity import HU_MAX, HU_MIN
from ctdenoise.io.atomic import atomic_write_file
from ctdenoise.io.hashing import sha256_file
from ctdenoise.model.architectures import architecture_of, get_architecture
from ctdenoise.model.denoiser import CLIPDenoiser, count_parameters
from ctdenoise.model.weights import ResolvedWeights, encoder_weights_sha256, resolve_clip_weights
from ctdenoise.model_files import (
    CONFIG_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_TENSORS_BYTES,
    TENSORS_FILE,
    architecture_name,
    checked_regular_file,
)
from ctdenoise.model_files import checkpoint_directory as _checkpoint_directory
from ctdenoise.model_files import read_checkpoint_config_file as _read_config

NORMALISATION = f"(HU+{-HU_MIN:g})/{HU_MAX - HU_MIN:g} clip [{HU_MIN:g},{HU_MAX:g}]"
_ENCODER_PREFIX = "encoder."


def save_checkpoint(
    model: nn.Module,
    directory: Path,
    *,
    training_summary: dict[str, Any] | None = None,
    include_encoder: bool = True,
    half: bool = False,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` and return the directory.

    Each file is written to a temporary file and renamed into place, the config last, so a reader sees
    either the old or the new checkpoint, never a half-written one. ``model`` is a network of a registered
    architecture (:func:`~ctdenoise.model.architectures.architecture_of`; ConfigError otherwise).
    ``include_encoder=False`` stores only the trainable part of a CLIPDenoiser and references the CLIP weights
    by sha256 (refused for a trained or a randomly initialised encoder, which no CLIP file can restore).
    ``half`` stores the trainable tensors in float16 (lossy), and encoder tensors in float16 only where that
    is exact (OpenAI's convolution weights are float16 already), so the recorded encoder hash stays verifiable.
    """
    directory = Path(directory)
    architecture = architecture_of(model)
    clip = model if isinstance(model, CLIPDenoiser) else None
    if not include_encoder and clip is None:
        raise CheckpointError(f"{directory}: a {architecture.name} has no CLIP encoder to leave out")
    if not include_encoder and clip is not None and (clip.config.train_encoder or clip.encoder_weights_sha256 is None):
        why = "it was trained" if clip.config.train_encoder else "it holds no CLIP weights (random initialisation)"
        raise CheckpointError(f"{directory}: the encoder must be included in the checkpoint because {why}")
    tensors = {
        key: _stored_tensor(key, value, half)
        for key, value in model.state_dict().items()
        if include_encoder or not key.startswith(_ENCODER_PREFIX)
    }
    config: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": {"name": architecture.name, **architecture.settings(model)},
        "normalisation": NORMALISATION,
        "parameters": count_parameters(model),
        "training_summary": training_summary or {},
        "tensors": {"file": TENSORS_FILE, "half": half},
        "versions": {"ctdenoise": ctdenoise.__version__, "torch": torch.__version__},
    }
    if clip is not None:
        config["encoder"] = {
            "name": clip.config.encoder_name,
            "weights_sha256": clip.encoder_weights_sha256,
            "weights_origin": clip.encoder_weights_origin,
            "included": include_encoder,
            "trained": clip.config.train_encoder,
        }
    directory.mkdir(parents=True, exist_ok=True)
    try:
        json.dumps(config["training_summary"], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory}: training_summary is not JSON-serialisable: {exc}") from exc
    tensors_path = directory / TENSORS_FILE
    atomic_write_file(tensors_path, lambda tmp: save_file(tensors, str(tmp)))
    config["tensors"]["sha256"] = sha256_file(tensors_path)
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write_file(directory / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return directory


def export_half(source: Path, target: Path) -> Path:
    """Write the checkpoint folder ``source`` into ``target`` with every tensor in float16 (for shipping).

    A CLIPDenoiser's trained or random encoder is rounded to float16 before it is saved, so the stored encoder and its
    recorded sha256 agree (:func:`save_checkpoint` keeps float32 where float16 would not be exact). The
    training summary is carried over unchanged; other files in ``target`` (a model card) are left alone.
    """
    model = load_checkpoint(source)
    if isinstance(model, CLIPDenoiser):
        with torch.no_grad():
            for tensor in model.encoder.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    summary = read_checkpoint_config(Path(source)).get("training_summary", {})
    return save_checkpoint(model, target, training_summary=summary, include_encoder=True, half=True)


def read_checkpoint_config(directory: Path) -> dict[str, Any]:
    """The JSON config of a checkpoint folder (or of its ``model.safetensors``): architecture, tensors, training summary.

    CheckpointError if it is missing, unreadable or not a ctdenoise checkpoint config.
    """
    return _read_config(_checkpoint_directory(Path(directory)) / CONFIG_FILE)


def load_checkpoint(
    directory: Path,
    *,
    encoder_weights: ResolvedWeights | str | Path | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild the network of a checkpoint folder (or of its ``model.safetensors``), in eval mode: a
    :class:`CLIPDenoiser` or another architecture its config names (:mod:`ctdenoise.model.architectures`).

    Refuses pickle-based files, a missing or foreign config, an unknown architecture or setting (ConfigError
    naming the config), and a ``model.safetensors`` whose sha256 differs from the one recorded
    (CheckpointError). If a CLIPDenoiser checkpoint does not carry the encoder, ``encoder_weights``
    (resolved weights or a file) supplies it, else :func:`resolve_clip_weights` looks in the cache /
    downloads; their sha256 must equal the recorded one.
    """
    directory = _checkpoint_directory(Path(directory))
    config_path = directory / CONFIG_FILE
    config = _read_config(config_path)
    settings = {k: v for k, v in config["architecture"].items() if k != "name"}
    try:
        architecture = get_architecture(architecture_name(config))
        with torch.device("meta"):  # checks the settings; nothing the size of the model is allocated
            skeleton = architecture.build(settings)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.problem, source=config_path) from exc
    tensors_path = directory / TENSORS_FILE
    _verify_file_hash(tensors_path, config["tensors"].get("sha256"))
    encoder = config.get("encoder")  # a CLIPDenoiser's only
    include_encoder = encoder is None or bool(encoder["included"])
    _check_tensor_shapes(skeleton, tensors_path, include_encoder=include_encoder)
    model = architecture.build(settings)  # allocated only once the file is known to fit it
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{tensors_path}: unreadable safetensors file: {exc}") from exc
    _load_tensors(model, tensors, include_encoder=include_encoder, source=tensors_path)
    if isinstance(model, CLIPDenoiser):
        _restore_encoder(model, config["encoder"], encoder_weights, directory)
    return model.to(map_location).eval()


def _restore_encoder(
    model: CLIPDenoiser, encoder: dict[str, Any], weights: ResolvedWeights | str | Path | None, directory: Path
) -> None:
    """Check the carried CLIP encoder against the sha256 the config records, or load the CLIP weights it
    references (``weights``, else the cache / download), and record their sha256 and origin on ``model``."""
    tensors_path, config_path = directory / TENSORS_FILE, directory / CONFIG_FILE
    recorded = encoder["weights_sha256"]
    if encoder["included"]:
        if recorded is not None and not encoder["trained"]:
            carried = encoder_weights_sha256(_without_counters(model.encoder.state_dict()))
            if carried != recorded:
                raise CheckpointError(
                    f"{tensors_path}: the carried encoder has sha256 {carried}, but {config_path} records "
                    f"{recorded}; the checkpoint is inconsistent"
                )
    else:
        resolved = _encoder_weights(weights, model.config.encoder_name)
        if resolved.sha256 != recorded:
            raise CheckpointError(
                f"{directory}: this model was trained on CLIP {model.config.encoder_name} weights with sha256 "
                f"{recorded} (origin: {encoder['weights_origin']}), but the supplied weights ({resolved.origin}) "
                f"have sha256 {resolved.sha256}; refusing to combine them"
            )
        model.load_encoder_weights(resolved)
    model.encoder_weights_sha256 = recorded
    model.encoder_weights_origin = encoder["weights_origin"]


def _stored_tensor(key: str, value: Tensor, half: bool) -> Tensor:
    """The tensor as saved: float16 when ``half`` (encoder tensors only where exact), else as is."""
    value = value.detach().cpu().contiguous()
    if not half or not value.is_floating_point():
        return value
    as_half = value.half()
    if key.startswith(_ENCODER_PREFIX) and not torch.equal(as_half.to(value.dtype), value):
        return value
    return as_half


def _without_counters(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


def _verify_file_hash(path: Path, recorded: str | None) -> None:
    """CheckpointError unless ``path`` is a regular file of bounded size whose sha256 is ``recorded``."""
    try:
        checked_regular_file(path, MAX_TENSORS_BYTES)
    except OSError:
        raise CheckpointError(f"{path}: tensor file missing") from None  # as check_checkpoint_files says
    if not recorded:
        raise CheckpointError(f"{path}: no sha256 recorded in {CONFIG_FILE}; cannot verify the tensors")
    actual = sha256_file(path)
    if actual != recorded:
        raise CheckpointError(
            f"{path}: sha256 {actual} differs from {recorded} recorded in {CONFIG_FILE}; "
            "the file was modified or corrupted"
        )


def _check_tensor_shapes(skeleton: nn.Module, tensors_path: Path, *, include_encoder: bool) -> None:
    """CheckpointError unless the tensors that ``tensors_path``'s header lists are exactly those of
    ``skeleton`` (the network built on the meta device; minus the encoder when not included), shape for
    shape. Reads only the header, so nothing the size of the model is allocated."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()
                if include_encoder or not k.startswith(_ENCODER_PREFIX)}
    try:
        with safe_open(str(tensors_path), framework="pt") as handle:
            stored = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{tensors_path}: unreadable safetensors file: {exc}") from exc
    _raise_for_mismatch(expected, stored, tensors_path)


def _raise_for_mismatch(expected: dict[str, tuple], stored: dict[str, tuple], source: Path) -> None:
    """CheckpointError naming the first missing, unexpected and wrongly shaped tensors, if any."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in expected if k in stored and tuple(stored[k]) != tuple(expected[k]))
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source}: tensors do not match the architecture in {CONFIG_FILE} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]})"
        )


def _load_tensors(model: nn.Module, tensors: dict[str, Tensor], *, include_encoder: bool, source: Path) -> None:
    """Copy ``tensors`` into ``model``: exactly its keys (minus the encoder when not included), same shapes."""
    expected = {
        k: v for k, v in model.state_dict().items() if include_encoder or not k.startswith(_ENCODER_PREFIX)
    }
    _raise_for_mismatch({k: tuple(v.shape) for k, v in expected.items()},
                        {k: tuple(v.shape) for k, v in tensors.items()}, source)
    with torch.no_grad():
        for key, tensor in tensors.items():
            expected[key].copy_(tensor)


def _encoder_weights(weights: ResolvedWeights | str | Path | None, encoder_name: str) -> ResolvedWeights:
    if isinstance(weights, ResolvedWeights):
        return weights
    return resolve_clip_weights(encoder_name, weights=weights)

