"""Batch denoising of many series: discovery, resume, atomic per-series output, and a report.

Guarantees (see README, "Reliability"):

* one bad series never stops the batch: its error is recorded in ``report.json`` and the run goes on;
* each series is written into a private temporary folder inside OUTDIR and published with one
  ``rename``; a run killed at any point leaves either the complete series folder or nothing visible;
* a re-run skips series whose folder is already published (resume) unless ``overwrite`` is set;
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
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ctdenoise import __version__
from ctdenoise.errors import CTDenoiseError, OutputError, OutputStorageError
from ctdenoise.inference import InferenceSettings, prepare_for_settings
from ctdenoise.io import SeriesRef, Volume, atomic_write_dir, find_series, read_volume, write_volume
from ctdenoise.io.atomic import output_os_error
from ctdenoise.io.discover import safe_name
from ctdenoise.noise_estimate import estimate_noise_hu
from ctdenoise.overlap import denoise_while_writing
from ctdenoise.registry import model_description

REPORT_FILE = "report.json"
LOCK_FILE = ".ctdenoise.lock"
#: Names of the staging folders/files of ``atomic_write_dir`` and of this module, left behind only by a kill.
STALE_PATTERNS = (".*.partial-*", ".*.old-*")


@dataclass
class SeriesResult:
    """Outcome of one series: ``status`` is "done", "skipped" (already done), "failed" or "planned".

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
    strength: float | None = None
    noise_hu_before: float | None = None
    noise_hu_after: float | None = None


@dataclass
class BatchReport:
    """Everything ``report.json`` holds; ``failed`` tells whether any series failed."""

    model: str
    output_format: str
    version: str = __version__
    series: list[SeriesResult] = field(default_factory=list)
    discovery_problems: list[str] = field(default_factory=list)

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
            "series": [asdict(s) for s in self.series],
            "discovery_problems": self.discovery_problems,
        }
        return json.dumps(payload, indent=2)


@dataclass(frozen=True)
class BatchJob:
    """One series to process and the folder (relative to OUTDIR) it is published as."""

    ref: SeriesRef
    input_root: Path
    key: str


def plan_jobs(inputs: Sequence[Path]) -> tuple[list[BatchJob], list[SeriesResult], list[str]]:
    """Discover every series under ``inputs``: jobs with unique output keys, failed inputs, skipped files.

    With several inputs, each input's keys are prefixed by the input's own name so the output tree
    mirrors the inputs side by side. An input that holds no usable series is a failed entry, not a
    reason to stop; files skipped during discovery (not DICOM, not CT) are listed as problems.
    """
    jobs: list[BatchJob] = []
    failures: list[SeriesResult] = []
    problems: list[str] = []
    seen: set[str] = set()
    for root in inputs:
        root = Path(root)
        try:
            refs = find_series(root)
        except CTDenoiseError as error:
            failures.append(SeriesResult(key=root.name, input=str(root), status="failed", error=str(error)))
            continue
        for ref in refs:
            key = f"{safe_name(root.resolve().name)}/{ref.key}" if len(inputs) > 1 else ref.key
            while key in seen:
                key = f"{key}-{len(seen)}"
            seen.add(key)
            jobs.append(BatchJob(ref=ref, input_root=root, key=key))
            problems.extend(f"{path}: {why}" for path, why in ref.problems)
    return jobs, failures, problems


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

        def write(hu: np.ndarray, slice_ready: Callable[[int], None]) -> list[Path]:
            written = write_volume(
                volume,
                hu,
                staging if is_dicom_output else staging / final_dir.name,
                format=output_format,
                slice_ready=slice_ready,
                series_description_suffix=f"denoised {model_label} s={settings.strength:g}",
                derivation_description=f"ctdenoise {__version__} {model_description(model, model_label)}, "
                f"strength {settings.strength:g}",
                **({"compression": compression} if is_dicom_output else {}),
            )
            noise_after.append(estimate_noise_hu(hu))  # every slice is final once write_volume returned
            return written

        denoise_while_writing(runner, volume, settings, write, progress)
    return SeriesResult(
        key=job.key,
        input=str(job.ref.paths[0].parent if len(job.ref.paths) > 1 else job.ref.paths[0]),
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
        if jobs:
            self._start(jobs[0])

    def _start(self, job: BatchJob) -> None:
        if job.key not in self._futures:
            self._futures[job.key] = self._executor.submit(read_volume, job.ref)

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
        self._executor.shutdown(wait=True)
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
) -> BatchReport:
    """Denoise ``jobs`` into ``out_dir`` (the caller holds the lock), appending to ``report`` and rewriting
    ``report_path`` after every series. The model is loaded only if some job needs work, and prepared
    (:func:`ctdenoise.inference.prepare_for_settings`) once, while the first series is still read in the
    background."""
    todo = [job for job in jobs if overwrite or not (out_dir / job.key).exists()]
    model: torch.nn.Module | None = None
    label = ""
    prefetcher = SeriesPrefetcher(todo)
    prepared: list[torch.nn.Module] = []

    def prepare_once(raw: torch.nn.Module) -> torch.nn.Module:
        if not prepared:
            prepared.append(prepare_for_settings(raw, settings))
        return prepared[0]

    try:
        for job in jobs:
            if (out_dir / job.key).exists() and not overwrite:
                result = SeriesResult(job.key, str(job.ref.paths[0]), "skipped", output=job.key)
            else:
                if model is None:
                    model, label = load_model()
                    report.model = label
                try:
                    result = denoise_one(
                        job, out_dir, model, label, settings, output_format, overwrite, progress,
                        read=prefetcher.read, prepare=prepare_once, compression=compression,
                    )
                except OutputStorageError as error:  # full or read-only output: every further series would fail
                    report.series.append(SeriesResult(job.key, str(job.ref.paths[0]), "failed", error=str(error)))
                    with suppress(OutputError):
                        write_text_atomic(report_path, report.to_json())
                    raise
                except CTDenoiseError as error:
                    result = SeriesResult(job.key, str(job.ref.paths[0]), "failed", error=str(error))
                except Exception as error:  # noqa: BLE001 - one bad series must not stop the batch
                    result = SeriesResult(
                        job.key, str(job.ref.paths[0]), "failed", error=f"unexpected {type(error).__name__}: {error}"
                    )
            report.series.append(result)
            write_text_atomic(report_path, report.to_json())
            if on_series_done is not None:
                on_series_done(result)
    finally:
        prefetcher.close()
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
) -> BatchReport:
    """Denoise every series under ``inputs`` into ``out_dir`` and write ``out_dir/report.json``.

    ``load_model`` returns (model, label); it is called once, and only if some series needs work.
    ``dry_run`` lists what would be done (status "planned"/"skipped") without loading the model or writing.
    ``compression`` (none|rle|jpeg-ls|jpeg2000) encodes derived DICOM pixels losslessly (image files ignore it).
    Errors of one series (:class:`CTDenoiseError`, or an unexpected exception, recorded by type and
    message) are reported and the batch continues.
    """
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in inputs]
    check_output_outside_inputs(out_dir, inputs)
    jobs, failures, problems = plan_jobs(inputs)
    if dry_run:
        report = BatchReport(
            model="(not loaded: dry run)", output_format=output_format, series=failures, discovery_problems=problems
        )
        for job in jobs:
            done = (out_dir / job.key).exists() and not overwrite
            report.series.append(SeriesResult(job.key, str(job.ref.paths[0]), "skipped" if done else "planned"))
        return report

    with output_lock(out_dir):
        remove_stale_partials(out_dir)
        report = BatchReport(model="", output_format=output_format, series=failures, discovery_problems=problems)
        process_jobs(
            jobs, out_dir, load_model, report, out_dir / REPORT_FILE, settings=settings, output_format=output_format,
            overwrite=overwrite, on_series_done=on_series_done, progress=progress, compression=compression,
        )
        write_text_atomic(out_dir / REPORT_FILE, report.to_json())
    return report
