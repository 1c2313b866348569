"""The noisy series ``ctdenoise adapt`` learns from: found and read as ``ctdenoise denoise`` finds and reads them.

Inputs may be folders (trees), files, .zip archives and DICOMDIR files (:func:`ctdenoise.jobs.plan.plan_jobs`);
every series is read with :func:`ctdenoise.io.read_volume`. A series that cannot be used is skipped with the
reason (unreadable, slices smaller than the training crop); only HU arrays and slice spacings are kept, never
headers, names or UIDs. Some slices are held out for the guard (:mod:`ctdenoise.adapt.guard`) and are used
neither as inputs nor as targets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctdenoise.errors import CTDenoiseError, EmptyInputError
from ctdenoise.io import read_volume
from ctdenoise.jobs.plan import job_input, plan_jobs

log = logging.getLogger("ctdenoise.adapt")

GUARD_SLICES = 4
"""Slices held out (spread evenly over all series) to compare the adapted model with its base."""


@dataclass
class NoisySeries:
    """One usable series: ``hu`` (slices, rows, cols) float32, ``slice_mm`` the distance between its slices
    (infinite for a single slice), and ``held_out``: the indices of its slices kept for the guard."""

    hu: np.ndarray
    slice_mm: float
    held_out: set[int] = field(default_factory=set)

    def training_slices(self) -> list[int]:
        """Indices of the slices that may be used as inputs or targets."""
        return [k for k in range(self.hu.shape[0]) if k not in self.held_out]


@dataclass(frozen=True)
class AdaptData:
    """The series found (``series``), and ``skipped``: one ``"input: reason"`` line per input left out."""

    series: list[NoisySeries]
    skipped: list[str]

    @property
    def slice_count(self) -> int:
        return sum(s.hu.shape[0] for s in self.series)

    def held_out_slices(self) -> list[np.ndarray]:
        """The held-out slices (rows, cols) in HU, series by series."""
        return [s.hu[k] for s in self.series for k in sorted(s.held_out)]


def load_noisy_series(inputs: Sequence[Path], *, min_size: int, max_slices: int | None = None) -> AdaptData:
    """Read every series under ``inputs``; skip (with the reason) those whose slices are smaller than
    ``min_size`` pixels or that cannot be read; keep at most ``max_slices`` slices in all (evenly spread within
    each series, shared out in proportion to the series' lengths). Holds out :data:`GUARD_SLICES` slices.
    Raises :class:`EmptyInputError` naming the inputs when no series is usable."""
    series: list[NoisySeries] = []
    skipped: list[str] = []
    with ExitStack() as workspace:
        jobs, failures, problems = plan_jobs(list(inputs), workspace)
        skipped += [f"{failure.input}: {failure.error}" for failure in failures]
        skipped += problems
        for job in jobs:
            where = job_input(job)
            try:
                volume = read_volume(job.ref, workers=1)
            except CTDenoiseError as error:
                skipped.append(f"{where}: {error}")
                continue
            if min(volume.hu.shape[1:]) < min_size:
                skipped.append(f"{where}: slices of {volume.hu.shape[1]}x{volume.hu.shape[2]} pixels are smaller "
                               f"than the {min_size}-pixel training crop")
                continue
            slice_mm = float(volume.spacing[0]) if volume.hu.shape[0] > 1 else float("inf")  # spacing: (slice, row, col)
            series.append(NoisySeries(volume.hu, slice_mm))
    for line in skipped:
        log.warning("skipped %s", line)
    if not series:
        raise EmptyInputError(Path(inputs[0]) if len(inputs) == 1 else Path("."),
                              "no usable CT series in the inputs" + (f" ({len(skipped)} skipped)" if skipped else ""))
    if max_slices is not None:
        series = _limit_slices(series, max_slices)
    _hold_out(series, GUARD_SLICES)
    return AdaptData(series, skipped)


def _limit_slices(series: list[NoisySeries], max_slices: int) -> list[NoisySeries]:
    """At most ``max_slices`` slices in all: a contiguous block from the middle of each series (neighbours stay
    neighbours), each series' share in proportion to its length, at least one slice each."""
    total = sum(s.hu.shape[0] for s in series)
    if total <= max_slices:
        return series
    kept = []
    for s in series:
        count = max(1, int(round(max_slices * s.hu.shape[0] / total)))
        start = (s.hu.shape[0] - count) // 2
        kept.append(NoisySeries(np.ascontiguousarray(s.hu[start:start + count]), s.slice_mm))
    return kept


def _hold_out(series: list[NoisySeries], count: int) -> None:
    """Mark ``count`` slices (never a series' first or last, evenly spread over all series) as held out, or
    fewer when there are too few slices to keep at least two for training in each series."""
    places = [(i, k) for i, s in enumerate(series) for k in range(1, s.hu.shape[0] - 1)]
    if len(places) < 2 * count:
        places = [(i, k) for i, s in enumerate(series) for k in range(s.hu.shape[0])]
        count = min(count, max(1, len(places) // 3))
    for index in np.linspace(0, len(places) - 1, num=count + 2)[1:-1].round().astype(int):
        i, k = places[index]
        series[i].held_out.add(k)
