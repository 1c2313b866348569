"""What ``ctdenoise denoise`` tells its user about a batch: one log line per series, the end line, the exit code."""

from __future__ import annotations

import logging
from pathlib import Path

from ctdenoise.cli import EXIT_OK, EXIT_PARTIAL
from ctdenoise.jobs.interrupt import HANDLED_SIGNALS
from ctdenoise.jobs.report import REPORT_FILE, BatchReport, SeriesResult

log = logging.getLogger("ctdenoise.denoise")


def _measures(result: SeriesResult) -> str:
    """'(3 slices, 1.2 s, strength 0.6)' from the values present; '' when none is known."""
    parts = [f"{result.slices} slices" if result.slices is not None else "",
             f"{result.seconds} s" if result.seconds is not None else "",
             f"strength {result.strength:g}" if result.strength is not None else ""]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


def log_series_result(result: SeriesResult) -> None:
    """Log the outcome of one series in one line (never a 'None'), then its pydicom warnings in one more."""
    if result.status == "failed":
        log.warning("%s: failed: %s", result.key, result.error)
    elif result.status == "changed":
        log.warning("%s: input changed, output kept as it was (%s); --if-changed redo redoes it",
                    result.key, result.change)
    elif result.status == "unchanged":
        noise = f"{result.noise_hu_before:g} HU" if result.noise_hu_before is not None else "unknown"
        log.info("%s: left unchanged: noise already low (%s; strength auto chose 0), nothing written; "
                 "--write-unchanged writes it", result.key, noise)
    elif result.status == "skipped":
        log.info("%s: skipped, output up to date%s", result.key, _measures(result).replace(" (", " (done earlier: ", 1))
    elif result.change:
        log.info("%s: %s%s, redone because the %s", result.key, result.status, _measures(result), result.change)
    else:
        log.info("%s: %s%s", result.key, result.status, _measures(result))
    if result.warnings:
        log.warning("%s: pydicom warned while reading: %s", result.key, "; ".join(result.warnings))


def log_dry_run(report: BatchReport) -> None:
    """One summary line of a dry run: what would be denoised (series, slices) and what is up to date."""
    counts: dict[str, int] = {}
    for s in report.series:
        counts[s.status] = counts.get(s.status, 0) + 1
    log.info("dry run: %d series to denoise (%d slices), %d up to date, %d with changed input kept",
             counts.get("planned", 0), report.totals()["planned_slices"], counts.get("skipped", 0),
             counts.get("changed", 0))


def interrupted_exit_code(signal_name: str) -> int:
    """128 + the signal number, as shells report a process stopped by that signal (130 SIGINT, 143 SIGTERM)."""
    return 128 + next(int(s) for s in HANDLED_SIGNALS if s.name == signal_name)


def finish(report: BatchReport, out_dir: Path, *, dry_run: bool = False) -> int:
    """Log the run's last line and return its exit code: 130/143 interrupted, 0 for a dry run, 1 some series
    failed or have changed input that was only reported, 0 otherwise."""
    if report.interrupted:
        totals = report.totals()
        log.warning("interrupted: %d of %d series done; run again to resume", totals["complete"], totals["series"])
        return interrupted_exit_code(report.interrupted)
    if dry_run:
        log_dry_run(report)
        return EXIT_OK
    failed = sum(s.status == "failed" for s in report.series)
    changed = sum(s.status == "changed" for s in report.series)
    totals = report.totals()
    log.info("%d series, %d failed%s; %d slices, %.1f s in all; report: %s", len(report.series), failed,
             f", {changed} with changed input kept" if changed else "", totals["slices"], totals["seconds"],
             out_dir / REPORT_FILE)
    return EXIT_PARTIAL if failed or changed else EXIT_OK
