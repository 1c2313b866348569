"""What a run does with a series an earlier run already published: skip it, redo it, or report it.

A published series is up to date when its input is unchanged since its output was made (the manifest
record of the output, :mod:`ctdenoise.jobs.manifest`): it is skipped and its earlier result reported
again. A series whose input changed is redone (``if_changed="redo"``) or reported as "changed"
(``"report"``); ``overwrite`` redoes every series.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ctdenoise.errors import ConfigError
from ctdenoise.jobs.manifest import read_manifest, source_record
from ctdenoise.jobs.plan import BatchJob, job_input
from ctdenoise.jobs.report import SeriesResult, result_from_dict

NO_RECORD = "no record of the input it was made from (an older ctdenoise wrote it, or a run stopped as it published it)"

IF_CHANGED_CHOICES = ("redo", "report")


@dataclass(frozen=True)
class ResumeDecision:
    """What a run does with one job: ``redo`` it (``replaces_output``: over an existing output folder), or
    report ``earlier`` instead; ``change`` says why an existing output is out of date (None: it is not)."""

    redo: bool
    replaces_output: bool = False
    change: str | None = None
    earlier: SeriesResult | None = None


def decide_resume(job: BatchJob, out_dir: Path, *, overwrite: bool, if_changed: str = "redo") -> ResumeDecision:
    """Redo ``job`` when its output folder is missing, ``overwrite`` is set, or (``if_changed="redo"``) its
    input differs from the manifest record of the output (:mod:`ctdenoise.jobs.manifest`); otherwise report
    the earlier result as "skipped" (up to date) or "changed" (``if_changed="report"``). ConfigError for
    another ``if_changed``."""
    if if_changed not in IF_CHANGED_CHOICES:
        raise ConfigError("if_changed", f"{if_changed!r} is not one of {', '.join(IF_CHANGED_CHOICES)}")
    if not (out_dir / job.key).exists():
        return ResumeDecision(redo=True)
    if overwrite:
        return ResumeDecision(redo=True, replaces_output=True)
    recorded = read_manifest(out_dir, job.key)
    try:
        change = NO_RECORD if recorded is None else source_record(job.ref).change_from(recorded[0])
    except OSError as exc:
        change = f"cannot read the input to compare it: {exc.strerror or exc}"
    earlier = result_from_dict(recorded[1]) if recorded is not None else SeriesResult(job.key, "", "skipped")
    earlier = replace(earlier, key=job.key, input=job_input(job), output=job.key, error=None)
    if change is None:
        return ResumeDecision(redo=False, earlier=replace(earlier, status="skipped"))
    if if_changed == "redo":
        return ResumeDecision(redo=True, replaces_output=True, change=change)
    return ResumeDecision(redo=False, change=change, earlier=replace(earlier, status="changed", change=change))
