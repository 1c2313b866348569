"""Training data: find the normal-dose series, split them by patient or series, and hold their slices.

:func:`split_series` applies the config's split (validation / exclude names) to what
:func:`ctdenoise.io.find_series` finds under ``data.root`` (or to the ``full_1mm``-style folder of each
patient of a Mayo-2016 tree); :func:`load_slices` reads the series into :class:`CTSlice` objects
(float32 HU in memory, about 1 MB per 512 x 512 slice).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctdenoise.errors import ConfigError
from ctdenoise.io import SeriesRef, find_series, read_volume
from ctdenoise.training.config import DataConfig

log = logging.getLogger(__name__)

#: Patient folders of the AAPM Mayo-2016 low-dose CT challenge data (L067, L096, ..., L506).
MAYO_PATIENT_PATTERN = re.compile(r"^L\d{3}$")


@dataclass(frozen=True)
class NamedSeries:
    """A series found for training, with the name the split uses (patient folder or series key)."""

    name: str
    ref: SeriesRef


@dataclass(frozen=True)
class SeriesSplit:
    """The series used for training and for validation (excluded ones are not listed)."""

    train: tuple[NamedSeries, ...]
    validation: tuple[NamedSeries, ...]


@dataclass(frozen=True)
class CTSlice:
    """One axial slice in HU (float32, (rows, cols)) with its in-plane spacing in mm and its origin.

    ``series`` (the series key) and ``index`` (the slice's place in that series' volume) say which slices are its
    neighbours (:func:`context_neighbours`); a slice with ``series`` None has none known (it is its own).
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float]
    source: str
    series: str | None = None
    index: int = 0


def discover_series(config: DataConfig) -> list[NamedSeries]:
    """Every series under ``config.root``, named by patient folder or by series key (``config.split_by``)."""
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise ConfigError("data.root", f"{root} is not a folder")
    if config.layout == "mayo2016":
        patients = sorted(p for p in root.iterdir() if p.is_dir() and MAYO_PATIENT_PATTERN.match(p.name))
        if not patients:
            raise ConfigError("data.root", f"{root} holds no Mayo-2016 patient folders (L067, L096, ...)")
        found = []
        for patient in patients:
            folder = patient / config.mayo_folder
            if not folder.is_dir():
                raise ConfigError("data.mayo_folder", f"{folder} does not exist")
            found += [NamedSeries(_name(config, patient.name, ref), ref) for ref in find_series(folder)]
        return found
    return [NamedSeries(_name(config, _top_folder(ref, root), ref), ref) for ref in find_series(root)]


def split_series(config: DataConfig) -> SeriesSplit:
    """Split the discovered series by ``config.validation`` / ``config.exclude`` names.

    Raises ConfigError naming ``data.validation`` or ``data.exclude`` for a name that matches nothing
    (a typo would otherwise leak a test patient into training), and ``data.root`` when no training
    series is left.
    """
    found = discover_series(config)
    names = {series.name for series in found}
    for key, wanted in (("data.validation", config.validation), ("data.exclude", config.exclude)):
        unknown = sorted(set(wanted) - names)
        if unknown:
            raise ConfigError(
                key, f"{unknown} match no {config.split_by} under {config.root}; found: {', '.join(sorted(names))}"
            )
    train = tuple(s for s in found if s.name not in config.validation and s.name not in config.exclude)
    validation = tuple(s for s in found if s.name in config.validation)
    if not train:
        raise ConfigError("data.root", f"no training series left under {config.root} after the split")
    return SeriesSplit(train=train, validation=validation)


def load_slices(series: tuple[NamedSeries, ...] | list[NamedSeries]) -> list[CTSlice]:
    """Read every slice of ``series`` (in order) as :class:`CTSlice` objects."""
    slices = []
    for item in series:
        volume = read_volume(item.ref)
        spacing = (float(volume.spacing[1]), float(volume.spacing[2]))
        for index, hu in enumerate(volume.hu):
            slices.append(CTSlice(np.ascontiguousarray(hu, dtype=np.float32), spacing, f"{item.ref.key}[{index}]",
                                  series=item.ref.key, index=index))
    return slices


def context_neighbours(slices: list[CTSlice], context_slices: int) -> list[tuple[int, ...]]:
    """For each slice of ``slices``, the positions in ``slices`` of the ``context_slices`` slices a 2.5-D model
    reads for it (``index - context_slices // 2 .. index + context_slices // 2`` of the same series, in that order).

    A neighbour that is not in ``slices`` (beyond the end of its volume, dropped, of another shape, or unknown:
    ``series`` None) is replaced by the nearest one towards the slice itself, as replicate padding along z does
    (:func:`ctdenoise.model.context_indices` at inference): an end slice stands in for its missing neighbour.
    """
    where: dict[tuple[str | None, int], int] = {
        (s.series, s.index): position for position, s in enumerate(slices) if s.series is not None
    }
    half = context_slices // 2
    neighbours = []
    for position, ct_slice in enumerate(slices):
        row = []
        for offset in range(-half, half + 1):
            found = position
            for step in range(abs(offset), 0, -1):  # the farthest available slice up to ``offset`` away
                candidate = where.get((ct_slice.series, ct_slice.index + step * (1 if offset > 0 else -1)))
                if ct_slice.series is not None and candidate is not None and slices[candidate].hu.shape == ct_slice.hu.shape:
                    found = candidate
                    break
            row.append(found)
        neighbours.append(tuple(row))
    return neighbours


def slices_at_least(slices: list[CTSlice], size: int) -> list[CTSlice]:
    """The slices whose rows and columns are both >= ``size`` (the others are logged and dropped)."""
    kept = [s for s in slices if min(s.hu.shape) >= size]
    for dropped in (s for s in slices if min(s.hu.shape) < size):
        log.warning("%s: %s is smaller than the %d crop; not used", dropped.source, dropped.hu.shape, size)
    if not kept:
        raise ConfigError("crop_size", f"no training slice is at least {size} x {size}")
    return kept


def _top_folder(ref: SeriesRef, root: Path) -> str:
    """The first folder below ``root`` holding the series (the patient), or the series key at top level."""
    parts = ref.paths[0].resolve().relative_to(root.resolve()).parts
    return parts[0] if len(parts) > 1 else ref.key


def _name(config: DataConfig, patient: str, ref: SeriesRef) -> str:
    return patient if config.split_by == "patient" else ref.key
