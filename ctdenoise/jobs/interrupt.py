"""Stopping a long run on SIGINT/SIGTERM at a point where nothing is half-written.

:func:`stop_on_signals` replaces the SIGINT (Ctrl-C) and SIGTERM (``kill``, systemd, a scheduler) handlers
with one that records the request. Code that writes calls :meth:`StopSignals.check` at safe points
(between series, after each batch of slices) and unwinds from there with :class:`StopRequested`, so every
``finally`` and staging clean-up runs; while nothing is being written (:meth:`StopSignals.immediate`,
e.g. while looking for series), the handler raises at once. Later signals of the same run are ignored,
so a second Ctrl-C cannot break the clean-up half-way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):
    """A stop asked for by a signal. A BaseException, like KeyboardInterrupt, so that handlers of
    per-series errors (``except Exception``) do not swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def signal_name(signum: int) -> str:
    """'SIGINT', 'SIGTERM', ..."""
    return signal.Signals(signum).name


def stop_name(stopped: BaseException) -> str:
    """The signal name of a StopRequested; "SIGINT" for a KeyboardInterrupt."""
    return signal_name(stopped.signum) if isinstance(stopped, StopRequested) else "SIGINT"


class StopSignals:
    """The stop request of a run: :attr:`signum` is the first signal received, or None."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._immediate = False

    def handle(self, signum: int, frame: object = None) -> None:
        """The signal handler: record the first signal; raise it at once only in immediate mode."""
        if self.signum is not None:
            return
        self.signum = signum
        if self._immediate:
            raise StopRequested(signum)

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop was requested."""
        if self.signum is not None:
            raise StopRequested(self.signum)

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Within the block a signal raises StopRequested wherever the main thread is (nothing is being written)."""
        self._immediate = True
        try:
            self.check()
            yield
        finally:
            self._immediate = False


@contextmanager
def stop_on_signals() -> Iterator[StopSignals]:
    """Install the handlers of HANDLED_SIGNALS for the block (main thread only; elsewhere the yielded
    object never records a signal) and restore the previous ones after it."""
    stop = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.signal(signum, stop.handle) for signum in HANDLED_SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
