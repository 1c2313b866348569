"""The folder batch runner (``ctdenoise denoise``): every series under the inputs into one OUTDIR, with a report.

Guarantees (see README, "Reliability"):

* one bad series never stops the batch: its error is recorded in ``report.json`` and the run goes on;
* each series is written into a private temporary folder inside OUTDIR and published with one
  ``rename``; a run killed at any point leaves either the complete series folder or nothing visible;
* a re-run skips series whose folder is already published (resume) and whose input is unchanged since
  (the manifest record of each output, :mod:`ctdenoise.jobs.manifest`); a series whose input changed is redone
  (or, with ``if_changed="report"``, reported); ``overwrite`` redoes every series;
* SIGINT/SIGTERM (:mod:`ctdenoise.jobs.interrupt`) stop the run between batches of slices: the series being
  written is dropped (no staging left), the report is written with the unfinished series "pending";
* two runs on the same OUTDIR cannot interleave: the second is refused while the first holds the lock;
* ``report.json`` is rewritten atomically after every series and never contains patient data
  (series are named by their input-relative key, errors by file path and problem);
* the next series is read in a background thread while the current one is denoised (at most two
  series are held in memory at once), each series' files are written while its later slices are still
  being denoised (:mod:`ctdenoise.jobs.overlap`), and the model is prepared once for the whole run
  (:func:`ctdenoise.runtime.prepare.prepare`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch

from ctdenoise.io.atomic import refuse_inputs
from ctdenoise.io.discover import count_slices
from ctdenoise.io.read_warnings import route_warnings
from ctdenoise.jobs.interrupt import StopRequested, stop_name
from ctdenoise.jobs.options import BatchOptions
from ctdenoise.jobs.outdir import output_lock, remove_stale_partials, write_text_atomic
from ctdenoise.jobs.plan import (
    BatchJob,
    check_inputs_exist,
    job_input,
    log_discovery_problems,
    plan_jobs,
    raise_for_unusable_inputs,
    series_warnings,
)
from ctdenoise.jobs.report import REPORT_FILE, BatchReport, SeriesResult
from ctdenoise.jobs.report_html import write_batch_report_html
from ctdenoise.jobs.resume import decide_resume
from ctdenoise.jobs.runner import process_jobs


def dry_run_report(jobs: Sequence[BatchJob], out_dir: Path, problems: list[str], options: BatchOptions) -> BatchReport:
    """What a run with ``options`` would do: "planned" series with their slice counts (and the change that makes
    them redone), earlier results as "skipped" or "changed"; nothing is loaded or written."""
    report = BatchReport(model="(not loaded: dry run)", output_format=options.output_format,
                         discovery_problems=problems)
    for job in jobs:
        decision = decide_resume(job, out_dir, overwrite=options.overwrite, if_changed=options.if_changed)
        if decision.redo:
            report.series.append(SeriesResult(job.key, job_input(job), "planned", slices=count_slices(job.ref),
                                              change=decision.change, warnings=series_warnings(job, [])))
        else:
            assert decision.earlier is not None, "a decision not to redo carries the earlier result"
            report.series.append(decision.earlier)
    return report


def run_batch(
    inputs: Sequence[Path],
    out_dir: Path,
    load_model: Callable[[], tuple[torch.nn.Module, str]],
    options: BatchOptions = BatchOptions(),
    *,
    dry_run: bool = False,
) -> BatchReport:
    """Denoise every series under ``inputs`` into ``out_dir`` and write ``out_dir/report.json``.

    ``load_model`` returns (model, label); it is called once, and only if some series needs work.
    ``options`` (:class:`ctdenoise.jobs.options.BatchOptions`): how series are denoised and written, and the
    callbacks. ``dry_run`` lists what would be done (:func:`dry_run_report`) without loading the model or writing.
    Inputs may be folders, files, .zip archives and DICOMDIR files (:func:`ctdenoise.jobs.plan.plan_jobs`).
    Before anything is written, InputError for an input that does not exist, holds no CT series or is an
    unsafe or damaged archive, and OutputError for an OUTDIR inside an input or in use by another run.
    A series already published is skipped when its input is unchanged, redone when it changed
    (``options.if_changed="redo"``) or reported as "changed" (``"report"``); ``options.overwrite`` redoes every one.
    Errors of one series (:class:`CTDenoiseError`, or an unexpected exception, recorded by type and
    message) are reported and the batch continues. A stop (``options.stop``): see
    :func:`ctdenoise.jobs.runner.process_jobs`; an interrupted run still writes ``report.json`` and returns
    with ``report.interrupted`` set (interrupted while looking for series: nothing is written and the
    report lists no series).
    pydicom's warnings are collected per series into the results instead of being shown.
    """
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in inputs]
    check_inputs_exist(inputs)
    refuse_inputs(out_dir, inputs, run_folder=True)
    with ExitStack() as workspace, route_warnings():
        try:
            with options.stop_immediately():
                jobs, failures, problems = plan_jobs(inputs, workspace)
        except (StopRequested, KeyboardInterrupt) as stopped:
            return BatchReport(model="", output_format=options.output_format, interrupted=stop_name(stopped))
        raise_for_unusable_inputs(failures)
        log_discovery_problems(problems)
        if dry_run:
            return dry_run_report(jobs, out_dir, problems, options)
        with output_lock(out_dir):
            remove_stale_partials(out_dir)
            report = BatchReport(model="", output_format=options.output_format, discovery_problems=problems)
            process_jobs(jobs, out_dir, load_model, report, out_dir / REPORT_FILE, options)
            write_text_atomic(out_dir / REPORT_FILE, report.to_json())
            write_batch_report_html(out_dir, report, jobs)
    return report
