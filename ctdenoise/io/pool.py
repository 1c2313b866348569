"""A sized pool of worker processes for per-file DICOM decode and encode, with bounded work in flight.

Processes, not threads: pydicom's parsing and writing are Python code that holds the GIL, and so do the
installed pixel codecs (pyjpegls, pylibjpeg-openjpeg: ``benchmarks/io_floor.py``'s ``gil_probe`` shows
another Python thread stalled for the whole of each decode and encode call), so threads would run one
file at a time. :func:`map_files` runs ``fn`` on each item in worker processes and yields the
results in item order; at most ``in_flight`` items are pulled from ``items`` and not yet yielded, so
memory stays bounded, and items are pulled lazily (an item generator may block, e.g. until a slice is
computed). ``workers=1`` (or one item, or a daemonic process, which may not have children) runs ``fn``
in the caller's thread exactly as a plain loop would, unless the call is *isolated*.

Isolation (``crash_error`` given): ``fn`` always runs in a worker process, even for one item or
``workers=1`` (only a daemonic process, which may not start children, still runs it in its own thread),
so that a native library that aborts the process (a decoder's ``abort()``, a segmentation fault) kills
a worker, not the caller. The items a dead worker's pool held are run again one by one, each in a new
process of its own; the item that kills that process too is the culprit, and ``crash_error(item, how)``
is raised for it (``how``: "signal SIGABRT", "exit status 3"); the others give their results, and the
pool is replaced for the next items and calls. Calls that are not isolated recover the same way from a pool
that another call's item broke.

What the serial path would show is kept: an error raised in a worker is raised again by the consumer at
the item where the serial loop would raise it (the first failing item in order; later ones are waited
for, not reported), with the same type and message; warnings (and pydicom's log records) raised in a
worker are raised again in the consumer's thread, in item order, where warning filters and
:mod:`ctdenoise.io.read_warnings` treat them as if raised there.

Pools are started once per process and size, on first use, and reused by every later call.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import pickle
import resource
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_all
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

IN_FLIGHT_PER_WORKER = 2
"""Default bound on items in flight, per worker: one being worked on, one waiting, so no worker idles."""

_LOGGERS = ("pydicom",)

_pools: dict[tuple[int, int], ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """The worker count for ``workers``: None gives :func:`available_cores`; ValueError below 1."""
    if workers is None:
        return available_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number of at least 1 (or None for one per core), got {workers!r}")
    return workers


def _context() -> multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext:
    """fork on Linux: a worker starts at once with the io modules loaded and the main module is not run
    again (spawn and forkserver import it in each worker, which needs the ``if __name__ == "__main__"``
    guard in every script that reads a series); spawn elsewhere (fork is unsafe on macOS)."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


#: How often a worker checks that the process that started it is still alive (seconds).
PARENT_CHECK_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """In a worker's daemon thread: end the worker once its parent is gone (SIGKILL gives the parent no
    chance to stop its pool, and a forked worker holds copies of its descriptors: the DICOM node's
    listening socket, run locks), so nothing outlives the process it served."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _init_worker(parent: int) -> None:
    """In a new worker: it ends when the process ``parent`` that started it is gone; Ctrl-C is ignored (it reaches the whole process group; the parent decides whether
    to stop, and a graceful stop waits for the files in flight), SIGTERM has its default
    action (not the parent's handler, copied by fork), and log records go only to the capture (the parent's
    handlers and filters, also copied, would print them a second time or drop them by the forking thread's
    state)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _no_core_dumps()
    for logger in [logging.getLogger()] + [logging.getLogger(name) for name in _LOGGERS]:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for log_filter in list(logger.filters):
            logger.removeFilter(log_filter)
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(_capture)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="ctdenoise-parent-watch", daemon=True).start()


def _no_core_dumps() -> None:
    """A worker that a decoder aborts leaves no core file (the size of the whole process) in the working folder,
    nor a Python stack dump on stderr (faulthandler, as pytest enables it): the caller reports the crash."""
    faulthandler.disable()
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ValueError, OSError):  # a platform without the limit: a core file is the only cost
        pass


def _pool(workers: int) -> ProcessPoolExecutor:
    key = (os.getpid(), workers)  # a forked child never uses its parent's pool
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ProcessPoolExecutor(
                workers, mp_context=_context(), initializer=_init_worker, initargs=(os.getpid(),)
            )
        return pool


def _discard(workers: int, pool: ProcessPoolExecutor | None = None) -> None:
    """Forget the pool of ``workers`` (only if it is still ``pool``, when given): the next call starts a fresh one."""
    with _pools_lock:
        key = (os.getpid(), workers)
        if pool is None or _pools.get(key) is pool:
            pool = _pools.pop(key, None)
        else:
            pool = None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


class _Capture(logging.Handler):
    """A worker's log records of the current item, made picklable (message text kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args, record.exc_info = record.getMessage(), None, None
        self.records.append(record)


_capture = _Capture()


def _module_name(filename: str) -> str | None:
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None


def _portable(exc: Exception) -> Exception | tuple[type, tuple, dict]:
    """``exc`` itself when pickle can rebuild it, else (class, args, attributes) to rebuild it without
    ``__init__``: ctdenoise's errors take (path, problem), which pickle's default reconstruction from
    ``args`` (the message alone) cannot call."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to pickle or unpickle
        return type(exc), exc.args, dict(vars(exc))


def _run(fn: Callable[[T], R], item: T, cwd: str) -> tuple[bool, object, list[tuple], list[logging.LogRecord]]:
    """In a worker: ``fn(item)`` run in the caller's working directory ``cwd`` (a reused worker may have been
    started while the caller was elsewhere, and relative paths must mean what they mean to the caller), with
    its warnings and log records captured; the outcome as picklable data."""
    if os.getcwd() != cwd:
        os.chdir(cwd)
    _capture.records = []
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        try:
            outcome: tuple[bool, object] = (True, fn(item))
        except Exception as exc:  # noqa: BLE001 - raised again in the consumer
            outcome = (False, _portable(exc))
    shown = [(str(w.message), w.category, w.filename, w.lineno, _module_name(w.filename)) for w in raised]
    return outcome[0], outcome[1], shown, _capture.records


def _replay(shown: list[tuple], records: list[logging.LogRecord]) -> None:
    """In the consumer: raise a worker's warnings and handle its log records as if they arose here."""
    for message, category, filename, lineno, module in shown:
        registry = vars(sys.modules[module]).setdefault("__warningregistry__", {}) if module in sys.modules else None
        warnings.warn_explicit(message, category, filename, lineno, module=module, registry=registry)
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _alone(fn: Callable[[T], R], item: T, cwd: str, sink: Connection, parent: int) -> None:
    """In a process of its own: :func:`_run` for one item, its outcome sent through ``sink``."""
    _init_worker(parent)
    outcome = _run(fn, item, cwd)
    try:
        sink.send(outcome)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled is the item's error
        sink.send((False, _portable(exc), outcome[2], outcome[3]))
    sink.close()


def how_it_died(exitcode: int | None) -> str:
    """'signal SIGABRT' for a process killed by a signal, else 'exit status N'."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


def _broken(item: object, how: str) -> BrokenProcessPool:
    """The error of an item that is not isolated and kills the process that runs it."""
    return BrokenProcessPool(f"a worker process died ({how}) while it worked on an item")


def _run_alone(fn: Callable[[T], R], item: T, cwd: str, crash_error: Callable[[T, str], Exception]) -> tuple:
    """:func:`_run` of one item in a new process of its own; ``crash_error(item, how)`` is raised when that
    process dies before it has sent the outcome."""
    context = _context()
    source, sink = context.Pipe(duplex=False)
    process = context.Process(target=_alone, args=(fn, item, cwd, sink, os.getpid()), daemon=True,
                              name="ctdenoise-isolated")
    process.start()
    sink.close()
    try:
        outcome = source.recv()
    except EOFError:
        process.join()
        raise crash_error(item, how_it_died(process.exitcode)) from None
    finally:
        source.close()
    process.join()
    return outcome


def _result(outcome: tuple) -> object:
    """The value of a worker's ``outcome`` (its warnings and log records replayed first), or its error raised."""
    ok, value, shown, records = outcome
    _replay(shown, records)
    if not ok:
        if isinstance(value, BaseException):
            raise value
        cls, args, attributes = value
        exc = cls.__new__(cls)
        exc.args = args
        vars(exc).update(attributes)
        raise exc
    return value


def map_files(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    count: int,
    workers: int | None = None,
    in_flight: int | None = None,
    crash_error: Callable[[T, str], Exception] | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each of the ``count`` items of ``items``, in order, computed by worker processes.

    ``fn`` and the items must be picklable (``fn`` a module-level function); ``workers``: see
    :func:`resolve_workers` (one pool per size, whatever ``count``). At most ``in_flight`` items (default
    :data:`IN_FLIGHT_PER_WORKER` per worker) have been pulled from ``items`` and not yet yielded.
    When the consumer stops early or an item fails, items not yet started are cancelled and those
    running are waited for before the error (or the generator's close) goes on, so no worker is still
    writing once this returns.
    ``crash_error``: isolate ``fn`` (see the module's docstring): it runs in worker processes whatever
    ``workers`` and ``count``, and the exception ``crash_error(item, how)`` is raised at the item whose
    worker died. Without it, the items in flight when a worker died are run again one by one as well (the
    pool is shared by every call of its size: an item of another call may have killed it), and an item
    that kills its own process raises BrokenProcessPool.
    """
    size = resolve_workers(workers)
    daemon = multiprocessing.current_process().daemon
    if daemon or (crash_error is None and (size <= 1 or count <= 1)):
        for item in items:
            yield fn(item)
        return
    bound = in_flight if in_flight is not None else IN_FLIGHT_PER_WORKER * size
    if bound < 1:
        raise ValueError(f"in_flight must be at least 1, got {bound}")
    pool = _pool(size)
    cwd = os.getcwd()
    pending: deque[tuple[Future, T, ProcessPoolExecutor]] = deque()
    source = iter(items)
    exhausted = False

    def take() -> R:
        future, item, owner = pending.popleft()
        try:
            outcome = future.result()
        except BrokenProcessPool:  # a worker died (killed, crashed in a codec), maybe in another call's item
            _discard(size, owner)  # later items get a fresh pool
            outcome = _run_alone(fn, item, cwd, crash_error or _broken)  # this item alone: does it kill a process?
        return cast(R, _result(outcome))  # what fn returned, as the worker sent it

    try:
        while pending or not exhausted:
            while pending and pending[0][0].done():  # finished ones first: an error surfaces at once
                yield take()
            if not exhausted and len(pending) < bound:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    continue
                try:
                    future = pool.submit(_run, fn, item, cwd)
                except BrokenProcessPool:  # a worker died since the last item: a fresh pool takes this one
                    _discard(size, pool)
                    pool = _pool(size)
                    future = pool.submit(_run, fn, item, cwd)
                pending.append((future, item, pool))
            elif pending:
                yield take()
    finally:
        for future, _, _ in pending:
            future.cancel()
        wait_all([future for future, _, _ in pending])
