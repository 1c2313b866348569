"""Running a list of jobs into one output folder: the loop that folder runs and torchrun ranks share.

For each job, in order: decide what an earlier run left (:mod:`ctdenoise.jobs.resume`), denoise the
series (:func:`ctdenoise.jobs.series.denoise_series`, its volume read ahead by
:class:`~ctdenoise.jobs.prefetch.SeriesPrefetcher`), record what it was made from
(:mod:`ctdenoise.jobs.manifest`) and rewrite the report. One bad series never stops the run: its error is
reported and the run goes on. A full or read-only output stops it (every further series would fail too).
A stop (:mod:`ctdenoise.jobs.interrupt`) is honoured between batches of slices: the series being written
is dropped, the rest are listed "pending".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path

import torch

from ctdenoise.errors import CTDenoiseError, OutputError, OutputStorageError
from ctdenoise.io import Volume
from ctdenoise.io.discover import count_slices
from ctdenoise.io.read_warnings import without_force_advice
from ctdenoise.jobs.interrupt import StopRequested, stop_name
from ctdenoise.jobs.manifest import manifest_path, manifest_text, remove_manifest, source_record
from ctdenoise.jobs.options import BatchOptions
from ctdenoise.jobs.outdir import check_inside, remove_empty_parents, write_text_atomic
from ctdenoise.jobs.plan import BatchJob, job_input, series_warnings
from ctdenoise.jobs.prefetch import SeriesPrefetcher
from ctdenoise.jobs.report import BatchReport, SeriesResult
from ctdenoise.jobs.resume import decide_resume
from ctdenoise.jobs.series import Derivation, denoise_series
from ctdenoise.runtime.prepare import prepare


def denoise_job(
    job: BatchJob,
    out_dir: Path,
    derivation: Callable[[], Derivation],
    *,
    overwrite: bool,
    progress: Callable[[int], None] | None,
    read: Callable[[BatchJob], Volume] | None = None,
) -> SeriesResult:
    """Denoise ``job`` into ``out_dir/<key>`` (:func:`ctdenoise.jobs.series.denoise_series`) with the
    :class:`Derivation` that ``derivation()`` returns, called once the output folder is checked and before
    the series is read (so a model prepared there is ready when the read finishes); ``read(job)`` reads it
    (default :func:`ctdenoise.io.read_volume`). Returns its "done" result ("unchanged" when a strength table
    chose 0 and nothing was written); errors are raised."""
    started = time.perf_counter()
    final_dir = out_dir / job.key
    check_inside(final_dir, out_dir)
    done = denoise_series(job.ref, final_dir, derivation(), overwrite=overwrite, progress=progress,
                          read=(lambda _ref: read(job)) if read is not None else None)
    return SeriesResult(
        key=job.key,
        input=job_input(job),
        status="unchanged" if done.left_unchanged else "done",
        slices=done.slices,
        seconds=round(time.perf_counter() - started, 3),
        output=None if done.left_unchanged else str(final_dir.relative_to(out_dir)),
        strength=done.strength,
        noise_hu_before=done.noise_hu_before,
        noise_hu_after=done.noise_hu_after,
    )


def process_jobs(
    jobs: Sequence[BatchJob],
    out_dir: Path,
    load_model: Callable[[], tuple[torch.nn.Module, str]],
    report: BatchReport,
    report_path: Path,
    options: BatchOptions,
) -> BatchReport:
    """Denoise ``jobs`` into ``out_dir`` (the caller holds the lock), appending to ``report`` and rewriting
    ``report_path`` after every series. The model is loaded only if some job needs work, and prepared
    (:func:`ctdenoise.runtime.prepare.prepare`) once, while the first series is still read in the
    background.

    Which jobs are redone is :func:`ctdenoise.jobs.resume.decide_resume`'s choice; each published series
    gets its manifest record (:mod:`ctdenoise.jobs.manifest`). ``options.on_start(series, slices)`` is called
    once with the work to do. ``options.stop`` is checked before each series and after each batch of slices: a
    stop (or KeyboardInterrupt) abandons the current series (its staging folder is removed), lists every job
    not finished as "pending", sets ``report.interrupted`` and returns.
    """
    stop = options.stop
    decisions = {job.key: decide_resume(job, out_dir, overwrite=options.overwrite, if_changed=options.if_changed)
                 for job in jobs}
    todo = [job for job in jobs if decisions[job.key].redo]
    if options.on_start is not None:
        options.on_start(len(todo), sum(count_slices(job.ref) or 0 for job in todo))
    model: torch.nn.Module | None = None
    label = ""
    prefetcher = SeriesPrefetcher(todo, options.io_workers)
    prepared: list[Derivation] = []

    def derivation_once() -> Derivation:
        if not prepared:
            assert model is not None, "the model is loaded before the first series is denoised"
            prepared.append(Derivation(prepare(model, options.settings, label=label),
                                       output_format=options.output_format, compression=options.compression,
                                       io_workers=options.io_workers, write_unchanged=options.write_unchanged))
        return prepared[0]

    def tick(slices: int) -> None:
        if options.progress is not None:
            options.progress(slices)
        if stop is not None:
            stop.check()

    try:
        for job in jobs:
            if stop is not None:
                stop.check()
            decision = decisions[job.key]
            if not decision.redo:
                assert decision.earlier is not None, "a decision not to redo carries the earlier result"
                result = decision.earlier
            else:
                if model is None:
                    model, label = load_model()
                    report.model = label
                remove_manifest(out_dir, job.key)
                try:
                    source = source_record(job.ref)
                    result = denoise_job(job, out_dir, derivation_once,
                                         overwrite=options.overwrite or decision.replaces_output,
                                         progress=tick, read=prefetcher.read)
                except OutputStorageError as error:  # full or read-only output: every further series would fail
                    report.series.append(SeriesResult(job.key, job_input(job), "failed", error=str(error)))
                    with suppress(OutputError):
                        write_text_atomic(report_path, report.to_json())
                    raise
                except CTDenoiseError as error:
                    result = SeriesResult(job.key, job_input(job), "failed", error=without_force_advice(str(error)))
                except Exception as error:  # noqa: BLE001 - one bad series must not stop the batch
                    if stop is not None:
                        stop.check()  # the writer thread saw the stop first: not a failure of the series
                    result = SeriesResult(
                        job.key, job_input(job), "failed", error=f"unexpected {type(error).__name__}: {error}"
                    )
                if result.status == "failed":
                    remove_empty_parents(out_dir, job.key)  # folders made for it hold nothing
                result.change = decision.change
                result.warnings = series_warnings(job, prefetcher.read_warnings(job.key))
                if result.status == "done":
                    record = manifest_path(out_dir, job.key)
                    with suppress(OutputError, OSError):  # without its record the series is redone next time
                        record.parent.mkdir(parents=True, exist_ok=True)
                        write_text_atomic(record, manifest_text(source, asdict(result)))
            report.series.append(result)
            write_text_atomic(report_path, report.to_json())
            if options.on_series_done is not None:
                options.on_series_done(result)
    except (StopRequested, KeyboardInterrupt) as stopped:
        report.interrupted = stop_name(stopped)
        listed = {s.key for s in report.series}
        pending = [job for job in jobs if job.key not in listed]
        for job in pending:
            remove_empty_parents(out_dir, job.key)
        report.series.extend(SeriesResult(job.key, job_input(job), "pending") for job in pending)
        write_text_atomic(report_path, report.to_json())
    finally:
        prefetcher.close()
    return report
