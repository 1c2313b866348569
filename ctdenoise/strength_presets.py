"""The named strength presets of a model folder (``presets.json``): ``--strength low|medium|high``.

A preset is defined by a measurement, not by a guess: the smallest strength, on a grid of 0.05, at which the model
removes a target fraction of the noise of the image-quality digital phantom (:mod:`ctdenoise.iq`) scanned at a
quarter dose with the ``standard`` kernel: 30 % (``low``), 50 % (``medium``) and 70 % (``high``) of the input's noise
(:data:`PRESET_TARGETS`). ``ctdenoise strength presets --model DIR --write`` measures them
(:mod:`ctdenoise.iq.presets`) and writes ``DIR/presets.json``: the strength of each preset with the numbers measured
at it (noise, NPS mean frequency, TTF50 of every rod, d'), the measurement's settings and the command, for the
sha256 of the model tensors it was measured for; a file measured for other tensors is refused. This module only
reads, validates and writes the file (plain JSON, bounded in size; nothing is unpickled).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctdenoise.errors import ModelError
from ctdenoise.io.atomic import atomic_write_file
from ctdenoise.model_files import read_small_json
from ctdenoise.registry import recorded_tensors_sha256
from ctdenoise.runtime.options import STRENGTH_PRESETS

log = logging.getLogger("ctdenoise.strength")

PRESETS_FILE = "presets.json"
PRESETS_FORMAT = "ctdenoise-strength-presets"
PRESETS_MAX_BYTES = 256 * 1024
"""Largest ``presets.json`` read (the shipped one is a few kB)."""

#: Each preset's target: the percentage of the input's noise (HU standard deviation) the model removes there.
PRESET_TARGETS: dict[str, float] = dict(zip(STRENGTH_PRESETS, (30.0, 50.0, 70.0)))
PRESET_NAMES: tuple[str, ...] = STRENGTH_PRESETS

_TOP_KEYS = {"format", "tensors_sha256", "measured_with", "command", "presets"}
_TOP_OPTIONAL = {"ctdenoise_version", "model", "input", "noise_curve"}
_SETTING_KEYS = {"phantom", "kernel", "dose", "realisations", "seed", "grid_step", "task"}
_PRESET_KEYS = {"strength", "target_noise_reduction_percent", "target_reached", "noise_hu", "noise_change_percent",
                "f_av", "f_av_change_percent", "ttf50", "dprime", "dprime_npwe"}
_INSERT_KEYS = {"name", "contrast_hu", "ttf50", "ttf50_se", "ttf50_change_percent"}


def presets_command(model_dir: str | Path) -> str:
    """The command that measures and writes the presets of ``model_dir`` (for messages)."""
    return f"ctdenoise strength presets --model {model_dir} --write"


@dataclass(frozen=True)
class StrengthPresets:
    """A validated ``presets.json``: ``strengths`` maps each of :data:`PRESET_NAMES` to its strength in [0, 1];
    ``tensors_sha256`` the model it was measured for; ``source`` where it was read from (for messages)."""

    strengths: Mapping[str, float]
    tensors_sha256: str
    source: str = "strength presets"

    def strength_of(self, name: str) -> float:
        """The strength of the preset ``name``; :class:`ModelError` for a name that is not a preset."""
        if name not in self.strengths:
            raise ModelError(f"{self.source}: no strength preset {name!r}; the presets are {', '.join(PRESET_NAMES)}")
        return self.strengths[name]


class _Invalid(ValueError):
    """A problem of the file's content; :func:`validate_presets` turns it into a ModelError naming the file."""


def _number(value: Any, where: str, *, low: float | None = None, high: float | None = None,
            nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid(f"{where} must be a finite number{' or null' if nullable else ''}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _Invalid(f"{where} must be from {low} to {high}, got {value!r}")
    return float(value)


def _keys(data: Any, where: str, required: set[str], optional: frozenset[str] | set[str] = frozenset()) -> dict:
    if not isinstance(data, dict):
        raise _Invalid(f"{where} must be an object, got {type(data).__name__}")
    missing = sorted(required - set(data))
    if missing:
        raise _Invalid(f"{where} lacks {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(data) - required - set(optional))
    if unknown:
        raise _Invalid(f"{where} has unknown key(s) {', '.join(repr(k) for k in unknown)}")
    return data


def _check_settings(data: Any) -> None:
    settings = _keys(data, "'measured_with'", _SETTING_KEYS)
    if not isinstance(settings["kernel"], str) or not settings["kernel"]:
        raise _Invalid(f"'measured_with.kernel' must be a kernel name, got {settings['kernel']!r}")
    _number(settings["dose"], "'measured_with.dose'", low=1e-6, high=1.0)
    _number(settings["grid_step"], "'measured_with.grid_step'", low=1e-6, high=1.0)
    for key, low in (("realisations", 2), ("seed", 0)):
        if isinstance(settings[key], bool) or not isinstance(settings[key], int) or settings[key] < low:
            raise _Invalid(f"'measured_with.{key}' must be a whole number of at least {low}, got {settings[key]!r}")
    for key in ("phantom", "task"):
        if not isinstance(settings[key], dict):
            raise _Invalid(f"'measured_with.{key}' must be an object")


def _check_preset(name: str, data: Any) -> float:
    where = f"'presets.{name}"
    preset = _keys(data, where + "'", _PRESET_KEYS)
    strength = _number(preset["strength"], where + ".strength'", low=0.0, high=1.0)
    assert strength is not None
    target = _number(preset["target_noise_reduction_percent"], where + ".target_noise_reduction_percent'")
    if target != PRESET_TARGETS[name]:
        raise _Invalid(f"{where}.target_noise_reduction_percent' is {target}, but preset {name!r} is defined as "
                       f"{PRESET_TARGETS[name]:g} % of the noise removed")
    if not isinstance(preset["target_reached"], bool):
        raise _Invalid(f"{where}.target_reached' must be true or false")
    if not preset["target_reached"] and strength != 1.0:
        raise _Invalid(f"{where}': a preset whose target was not reached has strength 1, got {strength}")
    _number(preset["noise_hu"], where + ".noise_hu'", low=0.0)
    _number(preset["noise_change_percent"], where + ".noise_change_percent'")
    for key in ("f_av", "f_av_change_percent", "dprime", "dprime_npwe"):
        _number(preset[key], f"{where}.{key}'", nullable=True)
    if not isinstance(preset["ttf50"], list) or not preset["ttf50"]:
        raise _Invalid(f"{where}.ttf50' must be a non-empty list of inserts")
    for i, insert in enumerate(preset["ttf50"]):
        record = _keys(insert, f"{where}.ttf50[{i}]'", _INSERT_KEYS)
        if not isinstance(record["name"], str):
            raise _Invalid(f"{where}.ttf50[{i}].name' must be text")
        _number(record["contrast_hu"], f"{where}.ttf50[{i}].contrast_hu'")
        for key in ("ttf50", "ttf50_se", "ttf50_change_percent"):
            _number(record[key], f"{where}.ttf50[{i}].{key}'", nullable=True)
    return strength


def validate_presets(data: Any, source: str) -> StrengthPresets:
    """The :class:`StrengthPresets` of the parsed ``presets.json`` content ``data``, checked strictly: the format
    tag, a sha256, the settings, every preset of :data:`PRESET_NAMES` with its defined target, a strength in
    [0, 1] (1 where the target was not reached), non-decreasing from ``low`` to ``high``, and its measured numbers;
    no unknown keys. :class:`ModelError` naming ``source`` and the problem otherwise."""
    try:
        top = _keys(data, "the file", _TOP_KEYS, _TOP_OPTIONAL)
        if top["format"] != PRESETS_FORMAT:
            raise _Invalid(f"'format' is {top['format']!r}, not {PRESETS_FORMAT!r}")
        sha = top["tensors_sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise _Invalid(f"'tensors_sha256' must be 64 lowercase hex digits, got {sha!r}")
        _check_settings(top["measured_with"])
        if not isinstance(top["command"], str) or not top["command"].strip():
            raise _Invalid("'command' must be the command line that measured the presets")
        presets = _keys(top["presets"], "'presets'", set(PRESET_NAMES))
        strengths = {name: _check_preset(name, presets[name]) for name in PRESET_NAMES}
        ordered = [strengths[name] for name in PRESET_NAMES]
        if any(b < a for a, b in zip(ordered, ordered[1:])):
            raise _Invalid(f"the strengths must not decrease from {PRESET_NAMES[0]} to {PRESET_NAMES[-1]}, got {ordered}")
    except _Invalid as problem:
        raise ModelError(f"{source}: not a valid strength presets file: {problem}") from None
    return StrengthPresets(strengths, sha, source)


def read_presets(model_dir: str | Path) -> StrengthPresets:
    """The strength presets of the model folder ``model_dir``, checked (:func:`validate_presets`) and matched
    against the tensors sha256 its ``config.json`` records. :class:`ModelError` naming the folder and the command
    that measures them when it has no ``presets.json``, and naming the file when it is unreadable, invalid or was
    measured for other model tensors."""
    directory = Path(model_dir)
    path = directory / PRESETS_FILE
    if not path.exists():
        raise ModelError(
            f"{directory}: this model folder has no {PRESETS_FILE}, so the strength presets "
            f"({', '.join(PRESET_NAMES)}) cannot be used with it; give a numeric strength from 0 to 1, or measure "
            f"the presets with `{presets_command(directory)}`"
        )
    try:
        data = read_small_json(path, PRESETS_MAX_BYTES)  # CheckpointError (a ModelError) names the file
    except OSError as error:
        raise ModelError(f"{path}: cannot read the strength presets ({error})") from None
    return _measured_for_folder(validate_presets(data, str(path)), directory,
                                f"refusing to use it (measure again with `{presets_command(directory)}`)")


def _measured_for_folder(presets: StrengthPresets, directory: Path, consequence: str) -> StrengthPresets:
    """``presets`` when they were measured for the tensors the model folder ``directory`` records; otherwise a
    :class:`ModelError` naming the file, both sha256 and ``consequence``."""
    model_sha = recorded_tensors_sha256(directory)
    if presets.tensors_sha256 != model_sha:
        raise ModelError(f"{presets.source}: measured for model tensors sha256 {presets.tensors_sha256}, but this "
                         f"folder's model has {model_sha}; {consequence}")
    return presets


def preset_strength(name: str, model_dir: str | Path | None) -> float:
    """The strength of the preset ``name`` for the model folder ``model_dir`` (:func:`read_presets`);
    :class:`ModelError` when ``model_dir`` is None (a model not loaded from a folder)."""
    if model_dir is None:
        raise ModelError(
            f"strength {name!r} needs a model loaded from its folder and prepared "
            f"(ctdenoise.runtime.prepare.load_prepared), whose {PRESETS_FILE} gives the strength; this model does "
            "not say where it was loaded from"
        )
    presets = read_presets(model_dir)
    strength = presets.strength_of(name)
    log.info("strength %s: %g (%s)", name, strength, presets.source)
    return strength


def write_presets(model_dir: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (a whole ``presets.json``, as :func:`ctdenoise.iq.presets.measure_presets` makes it) as
    ``MODEL_DIR/presets.json``, atomically, after checking it (:func:`validate_presets`) and that it was measured
    for the tensors the folder's ``config.json`` records (:class:`ModelError` otherwise). Returns the path."""
    directory = Path(model_dir)
    path = directory / PRESETS_FILE
    _measured_for_folder(validate_presets(payload, str(path)), directory, "not written")
    text = json.dumps(payload, indent=2) + "\n"
    atomic_write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
