"""Batch denoising of many series: discovery, resume, atomic per-series output, and a report.

Guarantees (see README, "Reliability"):

* one bad series never stops the batch: its error is recorded in ``report.json`` and the run goes on;
* each series is written into a private temporary folder inside OUTDIR and published with one
  ``rename``; a run killed at any point leaves either the complete series folder or nothing visible;
* a re-run skips series whose folder is already published (resume) and whose input is unchanged since
  (the manifest record of each output, :mod:`ctdenoise.manifest`); a series whose input changed is redone
  (or, with ``if_changed="report"``, reported); ``overwrite`` redoes every series;
* SIGINT/SIGTERM (:mod:`ctdenoise.interrupt`) stop the run between batches of slices: the series being
  written is dropped (no staging left), the report is written with the unfinished series "pending";
* two runs on the same OUTDIR cannot interleave: the second is refused while the first holds the lock;
* ``report.json`` is rewritten atomically after every series and never contains patient data
  (series are named by their input-relative key, errors by file path and problem);
* the next series is read in a background thread while the current one is denoised (at most two
  series are held in memory at once), each series' files are written while its later slices are still
  being denoised (:mod:`ctdenoise.overlap`), and the model is prepared once for the whole run
  (:func:`ctdenoise.inference.prepare_for_settings`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from ctdenoise import __version__
from ctdenoise.errors import ConfigError, CTDenoiseError, InputError, OutputError, OutputStorageError
from ctdenoise.inference import InferenceSettings, prepare_for_settings
from ctdenoise.io import SeriesRef, Volume, atomic_write_dir, find_series, read_volume, write_volume
from ctdenoise.io.atomic import output_os_error
from ctdenoise.interrupt import StopRequested, StopSignals, signal_name
from ctdenoise.io.archive import extracted_zip, is_zip_input
from ctdenoise.io.discover import count_slices, safe_name
from ctdenoise.io.read_warnings import collect_warnings, route_warnings, summarise, without_force_advice
from ctdenoise.manifest import manifest_path, manifest_text, read_manifest, remove_manifest, source_record
from ctdenoise.noise_estimate import estimate_noise_hu
from ctdenoise.overlap import denoise_while_writing
from ctdenoise.registry import derived_series_texts

REPORT_FILE = "report.json"
LOCK_FILE = ".ctdenoise.lock"
#: Names of the staging folders/files of ``atomic_write_dir`` and of this module, left behind only by a kill.
STALE_PATTERNS = (".*.partial-*", ".*.old-*")


@dataclass
class SeriesResult:
    """Outcome of one series: ``status`` is "done", "skipped" (done by an earlier run, whose slices, seconds
    and other results are reported again), "changed" (its input changed since its output was made and the
    run only reports it: ``if_changed="report"``), "failed", "planned" (dry run) or "pending" (the run was
    interrupted before it). ``change`` says how the input changed (for "changed", and for a "done" series
    redone because of it); ``warnings``: pydicom's warnings while reading it, one text per distinct message
    with the files that raised it (no values quoted).

    ``noise_hu_before`` / ``noise_hu_after``: the series' estimated noise in HU before and after denoising
    (:func:`ctdenoise.noise_estimate.estimate_noise_hu`: white-noise-equivalent standard deviation in soft
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
        """``series``: all listed; ``complete``: done now or earlier (done, skipped); ``slices`` and ``seconds``:
        their sums over the complete ones (earlier runs' included); ``planned_slices``: slices of planned series."""
        complete = [s for s in self.series if s.status in ("done", "skipped")]
        return {
            "series": len(self.series),
            "complete": len(complete),
            "slices": sum(s.slices or 0 for s in complete),
            "seconds": round(sum(s.seconds or 0.0 for s in complete), 3),
            "planned_slices": sum(s.slices or 0 for s in self.series if s.status == "planned"),
        }


@dataclass(frozen=True)
class BatchJob:
    """One series to process and the folder (relative to OUTDIR) it is published as; ``archive``: the .zip
    input it was extracted from (into ``input_root``, a temporary folder), None for other inputs."""

    ref: SeriesRef
    input_root: Path
    key: str
    archive: Path | None = None


def shown_path(path: Path, input_root: Path, archive: Path | None) -> str:
    """``path`` as the user knows it: inside a .zip input as ``ARCHIVE!/member``, else as is."""
    if archive is None:
        return str(path)
    try:
        return f"{archive}!/{path.relative_to(input_root).as_posix()}"
    except ValueError:
        return str(archive)


def job_input(job: BatchJob) -> str:
    """The input of ``job`` for the report: its folder (or its single file)."""
    source = job.ref.paths[0].parent if len(job.ref.paths) > 1 else job.ref.paths[0]
    return shown_path(source, job.input_root, job.archive)


def plan_jobs(
    inputs: Sequence[Path], workspace: ExitStack | None = None
) -> tuple[list[BatchJob], list[SeriesResult], list[str]]:
    """Discover every series under ``inputs``: jobs with unique output keys, failed inputs, skipped files.

    With several inputs, each input's keys are prefixed by the input's own name (a .zip archive's without
    .zip) so the output tree mirrors the inputs side by side. A .zip input is checked and extracted into a
    temporary folder that ``workspace`` removes when it closes (:mod:`ctdenoise.io.archive`; without a
    workspace it is a failed input); a DICOMDIR file stands for the files its records reference. An input
    that holds no usable series is a failed entry, not a reason to stop; files skipped during discovery
    (not DICOM, not CT) are listed as problems.
    """
    jobs: list[BatchJob] = []
    failures: list[SeriesResult] = []
    problems: list[str] = []
    seen: set[str] = set()
    for root in inputs:
        root = Path(root)
        archive = root if is_zip_input(root) else None
        try:
            if archive is not None:
                if workspace is None:
                    raise InputError(archive, "a .zip input needs a workspace to be extracted into")
                root = workspace.enter_context(extracted_zip(archive))
            refs = find_series(root)
        except CTDenoiseError as error:
            given = archive or root
            failures.append(SeriesResult(key=given.name, input=str(given), status="failed",
                                         error=without_force_advice(str(error))))
            continue
        name = archive.stem if archive is not None else root.resolve().name
        for ref in refs:
            key = f"{safe_name(name)}/{ref.key}" if len(inputs) > 1 else ref.key
            while key in seen:
                key = f"{key}-{len(seen)}"
            seen.add(key)
            jobs.append(BatchJob(ref=ref, input_root=root, key=key, archive=archive))
            problems.extend(f"{shown_path(path, root, archive)}: {why}" for path, why in ref.problems)
    return jobs, failures, problems


def check_inputs_exist(inputs: Sequence[Path]) -> None:
    """InputError (a usage error) for the first input that does not exist."""
    for root in inputs:
        if not Path(root).exists():
            raise InputError(root, "no such file or folder")


def raise_for_unusable_inputs(failures: Sequence[SeriesResult]) -> None:
    """InputError (a usage error, one line) naming every input of ``plan_jobs`` that gave no series."""
    if failures:
        raise InputError(None, "; ".join(f.error or f.input for f in failures))


NO_RECORD = "no record of the input it was made from (an older ctdenoise wrote it, or a run stopped as it published it)"


@dataclass(frozen=True)
class ResumeDecision:
    """What a run does with one job: ``redo`` it (``replaces_output``: over an existing output folder), or
    report ``earlier`` instead; ``change`` says why an existing output is out of date (None: it is not)."""

    redo: bool
    replaces_output: bool = False
    change: str | None = None
    earlier: SeriesResult | None = None


IF_CHANGED_CHOICES = ("redo", "report")


def result_from_dict(values: dict) -> SeriesResult:
    """A SeriesResult from the dict of an earlier one (unknown keys ignored, missing ones defaulted)."""
    names = {f.name for f in fields(SeriesResult)}
    return SeriesResult(**{k: v for k, v in values.items() if k in names})


def decide_resume(job: BatchJob, out_dir: Path, *, overwrite: bool, if_changed: str = "redo") -> ResumeDecision:
    """Redo ``job`` when its output folder is missing, ``overwrite`` is set, or (``if_changed="redo"``) its
    input differs from the manifest record of the output (:mod:`ctdenoise.manifest`); otherwise report the
    earlier result as "skipped" (up to date) or "changed" (``if_changed="report"``). ConfigError for another
    ``if_changed``."""
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


def series_warnings(job: BatchJob, read_messages: Sequence[str]) -> list[str]:
    """The warnings of ``job``'s discovery (per file) and of its reading (per series; repeats dropped), summarised."""
    found = {message for _, message in job.ref.warnings}
    source = job.ref.paths[0].parent if len(job.ref.paths) > 1 else job.ref.paths[0]
    return summarise([*job.ref.warnings, *((source, m) for m in read_messages if m not in found)])


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` or raise :class:`OutputError` if another run holds it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(out_dir / LOCK_FILE, "a+")
    except OSError as exc:
        raise output_os_error(out_dir, exc, "cannot create the output folder's lock file") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(out_dir, "another ctdenoise run is writing to this folder; wait for it or use another -o") from None
        yield
    finally:
        handle.close()


def remove_stale_partials(out_dir: Path) -> None:
    """Delete staging folders and files left by a run that was killed (only called while holding the lock)."""
    for pattern in STALE_PATTERNS:
        for leftover in out_dir.glob(f"**/{pattern}"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``, fsynced."""
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise output_os_error(path, exc, "cannot write") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_outside_inputs(out_dir: Path, inputs: Sequence[Path]) -> None:
    """Refuse an OUTDIR that is an input or lies inside one (outputs would be read back as inputs)."""
    out = out_dir.resolve()
    for root in inputs:
        src = Path(root).resolve()
        if out == src or src in out.parents:
            raise OutputError(out_dir, f"the output folder lies inside the input {root}; choose an OUTDIR outside the inputs")


def denoise_one(
    job: BatchJob,
    out_dir: Path,
    model: torch.nn.Module,
    model_label: str,
    settings: InferenceSettings,
    output_format: str,
    overwrite: bool,
    progress: Callable[[int], None] | None,
    read: Callable[[BatchJob], Volume] | None = None,
    prepare: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    compression: str = "none",
) -> SeriesResult:
    """Read (with ``read``, default :func:`read_volume`), denoise (with ``prepare(model)`` when given) while
    writing the finished slices (:func:`ctdenoise.overlap.denoise_while_writing`), and publish one series;
    return its result (errors are caught by the caller)."""
    started = time.perf_counter()
    final_dir = out_dir / job.key
    if not final_dir.resolve().is_relative_to(out_dir.resolve()):  # e.g. a symlink planted inside OUTDIR
        raise OutputError(final_dir, f"resolves outside the output folder {out_dir}; refusing to write there")
    runner = prepare(model) if prepare else model  # before waiting for the read, which may run in the background
    with atomic_write_dir(final_dir, overwrite=overwrite) as staging:
        volume = read(job) if read is not None else read_volume(job.ref)
        is_dicom_output = output_format == "dicom" or (output_format == "same" and volume.dicom_datasets)
        noise_after: list[float | None] = []
        description_suffix, derivation_description = derived_series_texts(model, model_label, settings.strength)

        def write(hu: np.ndarray, slice_ready: Callable[[int], None]) -> list[Path]:
            written = write_volume(
                volume,
                hu,
                staging if is_dicom_output else staging / final_dir.name,
                format=output_format,
                slice_ready=slice_ready,
                series_description_suffix=description_suffix,
                derivation_description=derivation_description,
                **({"compression": compression} if is_dicom_output else {}),
            )
            noise_after.append(estimate_noise_hu(hu))  # every slice is final once write_volume returned
            return written

        denoise_while_writing(runner, volume, settings, write, progress)
    return SeriesResult(
        key=job.key,
        input=job_input(job),
        status="done",
        slices=int(volume.hu.shape[0]),
        seconds=round(time.perf_counter() - started, 3),
        output=str(final_dir.relative_to(out_dir)),
        strength=settings.strength,
        noise_hu_before=_rounded(estimate_noise_hu(volume.hu)),
        noise_hu_after=_rounded(noise_after[0]),
    )


def _rounded(noise_hu: float | None) -> float | None:
    return None if noise_hu is None else round(noise_hu, 2)


class SeriesPrefetcher:
    """Reads series ahead in one background thread: while series k is denoised, series k + 1 is read.

    :meth:`read` returns the volume of a job in ``jobs`` (read errors are raised there, in the caller's
    thread, exactly as :func:`read_volume` raises them) and starts reading the job after it.
    """

    def __init__(self, jobs: Sequence[BatchJob]) -> None:
        self._next = {a.key: b for a, b in zip(jobs, jobs[1:])}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctdenoise-read")
        self._futures: dict[str, Future[Volume]] = {}
        self._warnings: dict[str, list[str]] = {}
        if jobs:
            self._start(jobs[0])

    def _start(self, job: BatchJob) -> None:
        if job.key not in self._futures:
            self._futures[job.key] = self._executor.submit(self._read_collecting, job)

    def _read_collecting(self, job: BatchJob) -> Volume:
        with collect_warnings() as raised:
            try:
                return read_volume(job.ref)
            finally:
                self._warnings[job.key] = raised

    def read_warnings(self, key: str) -> list[str]:
        """The warnings (cleaned, :mod:`ctdenoise.io.read_warnings`) raised while reading the series ``key``."""
        return self._warnings.pop(key, [])

    def read(self, job: BatchJob) -> Volume:
        self._start(job)
        future = self._futures.pop(job.key)
        following = self._next.get(job.key)
        if following is not None:
            self._start(following)
        return future.result()

    def close(self) -> None:
        """Drop reads nobody asked for and stop the thread."""
        for future in self._futures.values():
            future.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


def process_jobs(
    jobs: Sequence[BatchJob],
    out_dir: Path,
    load_model: Callable[[], tuple[torch.nn.Module, str]],
    report: BatchReport,
    report_path: Path,
    *,
    settings: InferenceSettings,
    output_format: str,
    overwrite: bool,
    on_series_done: Callable[[SeriesResult], None] | None,
    progress: Callable[[int], None] | None,
    compression: str = "none",
    if_changed: str = "redo",
    stop: StopSignals | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Denoise ``jobs`` into ``out_dir`` (the caller holds the lock), appending to ``report`` and rewriting
    ``report_path`` after every series. The model is loaded only if some job needs work, and prepared
    (:func:`ctdenoise.inference.prepare_for_settings`) once, while the first series is still read in the
    background.

    Which jobs are redone is :func:`decide_resume`'s choice; each published series gets its manifest
    record (:mod:`ctdenoise.manifest`). ``on_start(series, slices)`` is called once with the work to do.
    ``stop`` is checked before each series and after each batch of slices: a stop (or KeyboardInterrupt)
    abandons the current series (its staging folder is removed), lists every job not finished as
    "pending", sets ``report.interrupted`` and returns.
    """
    decisions = {job.key: decide_resume(job, out_dir, overwrite=overwrite, if_changed=if_changed) for job in jobs}
    todo = [job for job in jobs if decisions[job.key].redo]
    if on_start is not None:
        on_start(len(todo), sum(count_slices(job.ref) or 0 for job in todo))
    model: torch.nn.Module | None = None
    label = ""
    prefetcher = SeriesPrefetcher(todo)
    prepared: list[torch.nn.Module] = []

    def prepare_once(raw: torch.nn.Module) -> torch.nn.Module:
        if not prepared:
            prepared.append(prepare_for_settings(raw, settings))
        return prepared[0]

    def tick(slices: int) -> None:
        if progress is not None:
            progress(slices)
        if stop is not None:
            stop.check()

    try:
        for job in jobs:
            if stop is not None:
                stop.check()
            decision = decisions[job.key]
            if not decision.redo:
                result = decision.earlier
            else:
                if model is None:
                    model, label = load_model()
                    report.model = label
                remove_manifest(out_dir, job.key)
                try:
                    source = source_record(job.ref)
                    result = denoise_one(
                        job, out_dir, model, label, settings, output_format, overwrite or decision.replaces_output,
                        tick, read=prefetcher.read, prepare=prepare_once, compression=compression,
                    )
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
                result.change = decision.change
                result.warnings = series_warnings(job, prefetcher.read_warnings(job.key))
                if result.status == "done":
                    record = manifest_path(out_dir, job.key)
                    with suppress(OutputError, OSError):  # without its record the series is redone next time
                        record.parent.mkdir(parents=True, exist_ok=True)
                        write_text_atomic(record, manifest_text(source, asdict(result)))
            report.series.append(result)
            write_text_atomic(report_path, report.to_json())
            if on_series_done is not None:
                on_series_done(result)
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


def remove_empty_parents(out_dir: Path, key: str) -> None:
    """Remove the folders between ``out_dir`` and the output of ``key`` that are empty (made for a series
    that was stopped before it was published)."""
    folder = (out_dir / key).parent
    while folder != out_dir and folder.is_relative_to(out_dir):
        try:
            folder.rmdir()
        except OSError:  # not empty (other series live there) or already gone
            return
        folder = folder.parent


def stop_name(stopped: BaseException) -> str:
    """The signal name of a StopRequested; "SIGINT" for a KeyboardInterrupt."""
    return signal_name(stopped.signum) if isinstance(stopped, StopRequested) else "SIGINT"


def dry_run_report(
    jobs: Sequence[BatchJob], out_dir: Path, output_format: str, problems: list[str], *, overwrite: bool,
    if_changed: str,
) -> BatchReport:
    """What a run would do: "planned" series with their slice counts (and the change that makes them redone),
    earlier results as "skipped" or "changed"; nothing is loaded or written."""
    report = BatchReport(model="(not loaded: dry run)", output_format=output_format, discovery_problems=problems)
    for job in jobs:
        decision = decide_resume(job, out_dir, overwrite=overwrite, if_changed=if_changed)
        if decision.redo:
            report.series.append(SeriesResult(job.key, job_input(job), "planned", slices=count_slices(job.ref),
                                              change=decision.change, warnings=series_warnings(job, [])))
        else:
            report.series.append(decision.earlier)
    return report


def run_batch(
    inputs: Sequence[Path],
    out_dir: Path,
    load_model: Callable[[], tuple[torch.nn.Module, str]],
    *,
    settings: InferenceSettings = InferenceSettings(),
    output_format: str = "same",
    overwrite: bool = False,
    dry_run: bool = False,
    on_series_done: Callable[[SeriesResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
    compression: str = "none",
    if_changed: str = "redo",
    stop: StopSignals | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Denoise every series under ``inputs`` into ``out_dir`` and write ``out_dir/report.json``.

    ``load_model`` returns (model, label); it is called once, and only if some series needs work.
    ``dry_run`` lists what would be done (:func:`dry_run_report`) without loading the model or writing.
    ``compression`` (none|rle|jpeg-ls|jpeg2000) encodes derived DICOM pixels losslessly (image files ignore it).
    Inputs may be folders, files, .zip archives and DICOMDIR files (:func:`plan_jobs`). Before anything is
    written, InputError for an input that does not exist, holds no CT series or is an unsafe or damaged
    archive, and OutputError for an OUTDIR inside an input or in use by another run.
    A series already published is skipped when its input is unchanged, redone when it changed
    (``if_changed="redo"``) or reported as "changed" (``"report"``); ``overwrite`` redoes every one.
    Errors of one series (:class:`CTDenoiseError`, or an unexpected exception, recorded by type and
    message) are reported and the batch continues. ``stop`` and ``on_start``: see :func:`process_jobs`; an
    interrupted run still writes ``report.json`` and returns with ``report.interrupted`` set (interrupted
    while looking for series: nothing is written and the report lists no series).
    pydicom's warnings are collected per series into the results instead of being shown.
    """
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in inputs]
    check_inputs_exist(inputs)
    check_output_outside_inputs(out_dir, inputs)
    with ExitStack() as workspace, route_warnings():
        try:
            with stop.immediate() if stop is not None else nullcontext():
                jobs, failures, problems = plan_jobs(inputs, workspace)
        except (StopRequested, KeyboardInterrupt) as stopped:
            return BatchReport(model="", output_format=output_format, interrupted=stop_name(stopped))
        raise_for_unusable_inputs(failures)
        if dry_run:
            return dry_run_report(jobs, out_dir, output_format, problems, overwrite=overwrite, if_changed=if_changed)
        with output_lock(out_dir):
            remove_stale_partials(out_dir)
            report = BatchReport(model="", output_format=output_format, discovery_problems=problems)
            process_jobs(
                jobs, out_dir, load_model, report, out_dir / REPORT_FILE, settings=settings,
                output_format=output_format, overwrite=overwrite, on_series_done=on_series_done, progress=progress,
                compression=compression, if_changed=if_changed, stop=stop, on_start=on_start,
            )
            write_text_atomic(out_dir / REPORT_FILE, report.to_json())
    return report
