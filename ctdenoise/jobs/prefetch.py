"""Reading the next series of a run while the current one is denoised (at most two series in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ctdenoise.io import Volume, read_volume
from ctdenoise.io.read_warnings import collect_warnings
from ctdenoise.jobs.plan import BatchJob


class SeriesPrefetcher:
    """Reads series ahead in one background thread: while series k is denoised, series k + 1 is read.

    :meth:`read` returns the volume of a job in ``jobs`` (read errors are raised there, in the caller's
    thread, exactly as :func:`read_volume` raises them) and starts reading the job after it. ``io_workers``
    is :func:`read_volume`'s ``workers`` (None: one process per available core).
    """

    def __init__(self, jobs: Sequence[BatchJob], io_workers: int | None = None) -> None:
        self._io_workers = io_workers
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
                return read_volume(job.ref, workers=self._io_workers)
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
