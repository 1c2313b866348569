"""What a run reports: one :class:`SeriesResult` per series, gathered in a :class:`BatchReport` (``report.json``).

A report never holds patient data: series are named by their input-relative key, errors by file path and
problem. The ranks of a torchrun job each keep a partial report; :func:`merge_reports` makes the one
``report.json`` of the whole job from them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from ctdenoise import __version__

REPORT_FILE = "report.json"


@dataclass
class SeriesResult:
    """Outcome of one series: ``status`` is "done", "unchanged" (strength "auto" chose 0 because its noise is
    already low: nothing written), "skipped" (done by an earlier run, whose slices, seconds
    and other results are reported again), "changed" (its input changed since its output was made and the
    run only reports it: ``if_changed="report"``), "failed", "planned" (dry run) or "pending" (the run was
    interrupted before it). ``change`` says how the input changed (for "changed", and for a "done" series
    redone because of it); ``warnings``: pydicom's warnings while reading it, one text per distinct message
    with the files that raised it (no values quoted).

    ``noise_hu_before`` / ``noise_hu_after``: the series' estimated noise in HU before and after denoising
    (:func:`ctdenoise.noise_estimate.noise_hu_local_std_mode`: white-noise-equivalent standard deviation in soft
    tissue, from a few slices; None when the series has too little soft tissue); ``strength`` the one used.
    """

    key: str
    input: str
    status: str
    slices: int | None = None
    seconds: float | None = None
    output: str | None = None
    error: str | None = None
    change: str | None = None
    warnings: list[str] = field(default_factory=list)
    strength: float | None = None
    noise_hu_before: float | None = None
    noise_hu_after: float | None = None


def result_from_dict(values: dict) -> SeriesResult:
    """A SeriesResult from the dict of an earlier one (unknown keys ignored, missing ones defaulted)."""
    names = {f.name for f in fields(SeriesResult)}
    return SeriesResult(**{k: v for k, v in values.items() if k in names})


@dataclass
class BatchReport:
    """Everything ``report.json`` holds; ``failed`` tells whether any series failed; ``interrupted`` names the
    signal that stopped the run ("SIGINT", "SIGTERM"), None for a run that went through."""

    model: str
    output_format: str
    version: str = __version__
    series: list[SeriesResult] = field(default_factory=list)
    discovery_problems: list[str] = field(default_factory=list)
    interrupted: str | None = None

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.series)

    def to_json(self) -> str:
        counts: dict[str, int] = {}
        for s in self.series:
            counts[s.status] = counts.get(s.status, 0) + 1
        payload = {
            "ctdenoise_version": self.version,
            "model": self.model,
            "output_format": self.output_format,
            "counts": counts,
            "totals": self.totals(),
            "interrupted": self.interrupted,
            "series": [asdict(s) for s in self.series],
            "discovery_problems": self.discovery_problems,
        }
        return json.dumps(payload, indent=2)

    def totals(self) -> dict[str, float | int]:
        """``series``: all listed; ``complete``: done now or earlier (done, unchanged, skipped); ``slices`` and
        ``seconds``: their sums over the complete ones (earlier runs' included); ``planned_slices``: slices of
        planned series."""
        complete = [s for s in self.series if s.status in ("done", "unchanged", "skipped")]
        return {
            "series": len(self.series),
            "complete": len(complete),
            "slices": sum(s.slices or 0 for s in complete),
            "seconds": round(sum(s.seconds or 0.0 for s in complete), 3),
            "planned_slices": sum(s.slices or 0 for s in self.series if s.status == "planned"),
        }


def merge_reports(
    partials: Sequence[BatchReport], failures: list[SeriesResult], problems: list[str], output_format: str
) -> BatchReport:
    """One report from the ranks' partial reports: discovery failures first, then every series by key;
    interrupted when any rank was (by the first rank's signal)."""
    label = next((p.model for p in partials if p.model), "")
    series = sorted((s for p in partials for s in p.series), key=lambda s: s.key)
    interrupted = next((p.interrupted for p in partials if p.interrupted), None)
    return BatchReport(model=label, output_format=output_format, series=[*failures, *series], discovery_problems=problems,
                       interrupted=interrupted)
