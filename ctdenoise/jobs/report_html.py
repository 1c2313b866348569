"""``report.html``: the batch run at a glance, next to ``report.json``.

One self-contained page (:mod:`ctdenoise.html_page`: inline style, pictures as PNG data URIs, nothing fetched):
the counts, then one row per series with its status, slices, strength, estimated noise before and after
(:func:`ctdenoise.noise_estimate.noise_hu_local_std_mode`, as in ``report.json``), error, and for a finished series a
before/after thumbnail of its middle slice at a soft-tissue window. It holds nothing about a patient that
``report.json`` does not already hold: the same keys, paths, errors and numbers, plus the two pictures.
A picture that cannot be read is left out (its reason logged); the page is still written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctdenoise.html_page import Markup, ct_image_png, escape, img, page, table
from ctdenoise.io.read_warnings import collect_warnings
from ctdenoise.jobs.outdir import write_text_atomic
from ctdenoise.jobs.plan import BatchJob
from ctdenoise.jobs.report import BatchReport, SeriesResult

log = logging.getLogger("ctdenoise.jobs")

REPORT_HTML = "report.html"
#: Longest side (pixels) of a thumbnail.
THUMBNAIL_SIDE = 192


def middle_slice(source: Path | Sequence[Path]) -> np.ndarray:
    """The middle slice (HU) of a series: for a classic DICOM series (several files, in slice order) only its
    middle file is read; a single file (multi-frame DICOM, NIfTI, ...) or a folder of one series is read whole."""
    from ctdenoise.io import find_series, read_volume

    if not isinstance(source, Path):
        paths = list(source)
    elif source.is_dir():
        (ref,) = find_series(source)
        paths = list(ref.paths)
    else:
        paths = [source]
    volume = read_volume(paths[len(paths) // 2], workers=1)
    return volume.hu[volume.hu.shape[0] // 2]


def _thumbnails(result: SeriesResult, job: BatchJob | None, out_dir: Path) -> str:
    if result.status not in ("done", "skipped") or result.output is None or job is None:
        return ""
    try:
        with collect_warnings():  # the series' reader warnings are already in report.json: not again on stderr
            before = ct_image_png(middle_slice(job.ref.paths), max_side=THUMBNAIL_SIDE)
            after = ct_image_png(middle_slice(out_dir / result.output), max_side=THUMBNAIL_SIDE)
    except Exception as error:  # noqa: BLE001 - a picture must never fail the run or its report
        log.debug("%s: no thumbnail in %s: %s", result.key, REPORT_HTML, error)
        return "(no picture)"
    return Markup(f"{img(before, 'before', 'thumb')} {img(after, 'after', 'thumb')}")


def _noise(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_batch_report(report: BatchReport, jobs: Sequence[BatchJob], out_dir: Path) -> str:
    """The HTML of ``report.html`` for ``report`` (the run's jobs give the inputs of the thumbnails)."""
    by_key = {job.key: job for job in jobs}
    counts = ", ".join(f"{n} {status}" for status, n in sorted(json.loads(report.to_json())["counts"].items()))
    counts = counts or "no series"
    parts = [f"<p>ctdenoise {escape(report.version)}, model {escape(report.model or '-')}, output format "
             f"{escape(report.output_format)}: {escape(counts)}."
             + (f" <strong>Interrupted by {escape(report.interrupted)}.</strong>" if report.interrupted else "") + "</p>",
             "<p class='note'>Pictures: the middle slice before and after, soft-tissue window (centre 40, width 400 HU). "
             "Noise: estimated standard deviation in soft tissue (HU), as in report.json.</p>"]
    rows = [[s.key, s.status, s.slices if s.slices is not None else "-", "-" if s.strength is None else f"{s.strength:g}",
             _noise(s.noise_hu_before), _noise(s.noise_hu_after), _thumbnails(s, by_key.get(s.key), out_dir),
             s.error or s.change or "", "; ".join(s.warnings)]
            for s in report.series]
    parts.append(table(["series", "status", "slices", "strength", "noise before", "noise after", "before / after",
                        "error or change", "warnings"], rows, text_columns=2,
                       row_classes=["failed" if s.status == "failed" else None for s in report.series]))
    if report.discovery_problems:
        parts.append("<h2>Files skipped while looking for series</h2><ul>"
                     + "".join(f"<li>{escape(p)}</li>" for p in report.discovery_problems) + "</ul>")
    return page("ctdenoise batch report", "\n".join(parts))


def write_batch_report_html(out_dir: Path, report: BatchReport, jobs: Sequence[BatchJob]) -> None:
    """Write ``out_dir/report.html`` atomically (:func:`render_batch_report`)."""
    write_text_atomic(Path(out_dir) / REPORT_HTML, render_batch_report(report, jobs, Path(out_dir)))
