"""The strength table of a model folder (``strength.json``): which strength to use for a series' estimated noise.

``--strength auto`` (and ``strength="auto"`` in the MONAI transforms and the bundle) sets each series' strength
from its estimated noise (:func:`ctdenoise.noise_estimate.noise_hu_local_std_mode`) through a table fitted for one
model on its validation set (``ctdenoise strength fit --write-table``). The table is a list of points
``[noise_hu, strength]``: noise strictly increasing, strength non-decreasing in [0, 1]; between points the
strength is interpolated linearly, outside them it is the first or last point's (clamped). A table records the
sha256 of the model tensors it was fitted for and is refused for any other model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression

from ctdenoise.errors import ModelError
from ctdenoise.io.atomic import atomic_write_file
from ctdenoise.registry import recorded_tensors_sha256
from ctdenoise.runtime.options import AUTO_STRENGTH  # "auto": the strength value that asks for the table
from ctdenoise.strength_presets import PRESET_NAMES, preset_strength

STRENGTH_TABLE_FILE = "strength.json"
TABLE_FORMAT = "ctdenoise-strength-table"


@dataclass(frozen=True)
class StrengthTable:
    """A validated noise -> strength table. ``points``: ((noise_hu, strength), ...), noise strictly increasing,
    strength non-decreasing, all finite, strength in [0, 1]; ``tensors_sha256``: the model it was fitted for;
    ``source``: where it was read from (for messages). Invalid points raise :class:`ModelError` naming ``source``."""

    points: tuple[tuple[float, float], ...]
    tensors_sha256: str
    source: str = "strength table"

    def __post_init__(self) -> None:
        if not self.points:
            raise ModelError(f"{self.source}: the strength table has no points")
        noise = [p[0] for p in self.points]
        strength = [p[1] for p in self.points]
        if not all(math.isfinite(v) for v in noise + strength):
            raise ModelError(f"{self.source}: the strength table holds a value that is not a finite number")
        if any(b <= a for a, b in zip(noise, noise[1:])):
            raise ModelError(f"{self.source}: the table's noise values must increase strictly, got {noise}")
        if any(not 0.0 <= s <= 1.0 for s in strength) or any(b < a for a, b in zip(strength, strength[1:])):
            raise ModelError(f"{self.source}: the table's strengths must be in [0, 1] and non-decreasing, got {strength}")

    def strength_for(self, noise_hu: float) -> float:
        """The strength for a series of estimated noise ``noise_hu`` (HU): linear between the table's points,
        the first/last point's strength below/above them."""
        noise, strength = zip(*self.points)
        return float(np.interp(float(noise_hu), noise, strength))


def read_strength_table(model_dir: str | Path) -> StrengthTable:
    """The strength table of the model folder ``model_dir``, checked against the tensors sha256 its
    ``config.json`` records. Raises :class:`ModelError` naming the folder when it has no table (such a model
    supports numeric strengths only), and naming the file when the table is unreadable, invalid, or was fitted
    for other model tensors."""
    directory = Path(model_dir)
    path = directory / STRENGTH_TABLE_FILE
    if not path.is_file():
        raise ModelError(
            f"{directory}: this model folder has no {STRENGTH_TABLE_FILE}, so strength 'auto' cannot be used with "
            f"it; give a numeric strength from 0 to 1, or fit a table with `ctdenoise strength fit RECIPE.yaml "
            f"--model {directory} --write-table` (RECIPE.yaml: a training recipe whose validation set is scored)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != TABLE_FORMAT:
            raise ValueError(f"'format' is {data.get('format')!r}, not {TABLE_FORMAT!r}")
        points = tuple((float(n), float(s)) for n, s in data["points"])
        fitted_for = str(data["tensors_sha256"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelError(f"{path}: not a readable strength table ({error})") from None
    model_sha = recorded_tensors_sha256(directory)
    if fitted_for != model_sha:
        raise ModelError(
            f"{path}: fitted for model tensors sha256 {fitted_for}, but this folder's model has {model_sha}; "
            f"refusing to apply it (refit with `ctdenoise strength fit RECIPE.yaml --model {directory} --write-table`)"
        )
    return StrengthTable(points, fitted_for, str(path))


def strength_setting(
    strength: float | str | StrengthTable, model_dir: str | Path | None
) -> float | StrengthTable:
    """What :class:`~ctdenoise.runtime.settings.InferenceSettings` takes as ``strength`` for a user's value: a number
    or a table as it is, ``"auto"`` the table of the model folder ``model_dir`` (:func:`read_strength_table`;
    :class:`ModelError` when ``model_dir`` is None, i.e. the model was not loaded from a folder), a preset name
    (``"low"``, ``"medium"``, ``"high"``) the strength the folder's ``presets.json`` gives it
    (:func:`ctdenoise.strength_presets.preset_strength`; ModelError likewise). Any other text raises
    :class:`ModelError` saying what is accepted."""
    if isinstance(strength, str):
        if strength in PRESET_NAMES:
            return preset_strength(strength, model_dir)
        if strength != AUTO_STRENGTH:
            raise ModelError(f"strength {strength!r} is neither a number from 0 to 1, {AUTO_STRENGTH!r} nor a preset "
                             f"({', '.join(PRESET_NAMES)})")
        if model_dir is None:
            raise ModelError(
                "strength 'auto' needs a model loaded from its folder and prepared "
                f"(ctdenoise.runtime.prepare.load_prepared), whose {STRENGTH_TABLE_FILE} gives the strength; this "
                "model does not say where it was loaded from"
            )
        return read_strength_table(model_dir)
    return strength


def fit_strength_points(noise_hu: Sequence[float], strengths: Sequence[float]) -> list[tuple[float, float]]:
    """Table points from (noise, best strength) pairs, e.g. one per validation level: the pairs sorted by noise
    (equal noise values merged, their strengths averaged), their strengths made non-decreasing by isotonic
    regression (least squares; :func:`scipy.optimize.isotonic_regression`) and clamped to [0, 1]."""
    if len(noise_hu) != len(strengths) or not noise_hu:
        raise ValueError("need as many strengths as noise values, at least one")
    merged: dict[float, list[float]] = {}
    for n, s in zip(noise_hu, strengths):
        merged.setdefault(float(n), []).append(float(s))
    noise = sorted(merged)
    counts = np.array([len(merged[n]) for n in noise], dtype=np.float64)
    means = np.array([np.mean(merged[n]) for n in noise])
    fitted = np.clip(isotonic_regression(means, weights=counts, increasing=True).x, 0.0, 1.0)
    return [(n, float(s)) for n, s in zip(noise, fitted)]


def write_strength_table(
    model_dir: str | Path, points: Sequence[tuple[float, float]], fitted_on: dict[str, Any], command: str
) -> Path:
    """Write ``points`` as ``MODEL_DIR/strength.json`` for the tensors ``model_dir``'s ``config.json`` records,
    with ``fitted_on`` (what data it was fitted on) and ``command`` (how to refit it); atomically (a temporary
    file renamed over the old one). The points are validated first (:class:`StrengthTable`). Returns the path."""
    directory = Path(model_dir)
    path = directory / STRENGTH_TABLE_FILE
    table = StrengthTable(tuple((float(n), float(s)) for n, s in points), recorded_tensors_sha256(directory), str(path))
    rounded = tuple((round(n, 3), round(s, 3)) for n, s in table.points)
    StrengthTable(rounded, table.tensors_sha256, str(path))  # still valid rounded
    payload = {"format": TABLE_FORMAT, "tensors_sha256": table.tensors_sha256, "points": [list(p) for p in rounded],
               "fitted_on": fitted_on, "command": command}
    text = json.dumps(payload, indent=2) + "\n"
    atomic_write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
