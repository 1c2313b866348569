"""The DICOM node: the receiving SCP, quiet-period completion, denoising and delivery, wired around the spool.

One worker (the thread calling :meth:`Node.run`) does one unit of work at a time: close the series that
went quiet, denoise one closed series, or deliver one derived series to one destination. Every unit's
outcome is saved in the spool before the next starts, so a kill at any moment loses nothing: a restart
redoes at most the unit that was interrupted, and redoing it gives the same files with the same UIDs
(:mod:`ctdenoise.serve.derive`), which a destination stores over the first copy.

Stopping (:meth:`Node.run`'s ``stop`` event, set on SIGTERM): the SCP stops accepting associations at once,
the unit of work in progress is finished, everything else stays parked in the spool for the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ctdenoise.errors import CTDenoiseError, OutputStorageError
from ctdenoise.serve.completion import quiet_entries
from ctdenoise.serve.scp import StorageSCP
from ctdenoise.serve.senders import DeliveryError, Destination, next_attempt
from ctdenoise.serve.spool import DestinationState, EntryState, Spool

log = logging.getLogger("ctdenoise.serve")


INTERRUPTED_SERIES = ("the association that sent this series was aborted (sender stopped or connection lost) and "
                      "no later association finished it, so the series may be incomplete; send it again")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts: ``initial`` seconds after the first failure, doubled each time, at most ``maximum``."""

    initial: float = 5.0
    maximum: float = 300.0


class Node:
    """Receive with ``scp`` into ``spool``; a series quiet for ``series_timeout`` seconds is denoised with
    ``denoise(instances_dir, derived_dir) -> files written`` and delivered to every one of ``destinations``."""

    def __init__(self, spool: Spool, scp: StorageSCP, denoise: Callable[[Path, Path], int],
                 destinations: Sequence[Destination], *, series_timeout: float, retry: RetryPolicy = RetryPolicy(),
                 poll: float = 0.5) -> None:
        if not destinations:
            raise ValueError("a node needs at least one destination")
        self.spool = spool
        self.scp = scp
        self.denoise = denoise
        self.destinations = list(destinations)
        self.series_timeout = series_timeout
        self.retry = retry
        self.poll = poll
        self._derive_after: dict[str, float] = {}

    def run(self, stop: threading.Event, ready: Callable[[int], None] | None = None) -> None:
        """Serve until ``stop`` is set; ``ready(port)`` is called once the SCP listens."""
        with self.spool.locked():
            self.scp.start()
            log.info("listening as %s on %s:%d; %d destination(s); spool %s", self.scp.config.ae_title,
                     self.scp.config.host, self.scp.port, len(self.destinations), self.spool.root)

            def stop_when_asked() -> None:
                stop.wait()
                self.scp.stop()

            watcher = threading.Thread(target=stop_when_asked, name="ctdenoise-stop")
            watcher.start()
            if ready is not None:
                ready(self.scp.port)
            try:
                while not stop.is_set():
                    if not self.step():
                        stop.wait(self.poll)
            finally:
                stop.set()
                watcher.join()
        log.info("stopped; unfinished series stay in %s", self.spool.root)

    def step(self) -> bool:
        """Do one unit of work; False when there was nothing to do now."""
        now = time.time()
        for entry_id in quiet_entries(self.spool.receiving(), now, self.series_timeout):
            closed = self.spool.close(entry_id)
            if closed.interrupted:
                self.spool.fail(closed, INTERRUPTED_SERIES)
                log.warning("series %s: failed, %d instances kept in failed/: %s", closed.id, closed.instances,
                            INTERRUPTED_SERIES)
        for state in self.spool.entries("closed"):
            if self._derive_after.get(state.id, 0.0) <= now:
                self._derive(state)
                return True
        for state in self.spool.entries("derived"):
            if self._deliver_next(state, now):
                return True
        return False

    def _derive(self, state: EntryState) -> None:
        started = time.perf_counter()
        try:
            state.derived = self.spool.derive(state.id, self.denoise)
        except OutputStorageError as error:  # the spool's disk, not the series: try again later
            wait = self.retry.maximum
            self._derive_after[state.id] = time.time() + wait
            log.error("series %s: cannot write the derived series (retry in %.0f s): %s", state.id, wait, error)
            return
        except Exception as error:  # noqa: BLE001 - one bad series must not stop the node
            message = str(error) if isinstance(error, CTDenoiseError) else f"unexpected {type(error).__name__}: {error}"
            self.spool.fail(state, message)
            log.warning("series %s: failed, %d instances kept in failed/: %s", state.id, state.instances, message)
            return
        state.stage = "derived"
        state.seconds = round(time.perf_counter() - started, 3)
        state.destinations = {d.name: DestinationState() for d in self.destinations}
        self.spool.save(state)

    def _deliver_next(self, state: EntryState, now: float) -> bool:
        """Deliver ``state``'s derived series to its next due destination, or finish it once all confirmed."""
        for destination in self.destinations:
            progress = state.destinations.setdefault(destination.name, DestinationState())
            if progress.confirmed or progress.next_attempt > now:
                continue
            progress.attempts += 1
            try:
                destination.deliver(self.spool.derived_files(state.id))
            except Exception as error:  # noqa: BLE001 - a destination's failure is retried, whatever it is
                reason = str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__}: {error}"
                progress.last_error = reason
                progress.next_attempt = next_attempt(progress.attempts, time.time(), self.retry.initial,
                                                     self.retry.maximum)
                log.warning("series %s: delivery to %s failed (attempt %d, next in %.0f s): %s", state.id,
                            destination.name, progress.attempts, progress.next_attempt - time.time(), reason)
            else:
                progress.confirmed, progress.last_error = True, None
            self.spool.save(state)
            return True
        if all(state.destinations[d.name].confirmed for d in self.destinations):
            self.spool.finish(state)
            attempts = sum(state.destinations[d.name].attempts for d in self.destinations)
            log.info("series %s: %d instances received, %d derived in %.1f s, delivered to %s (%d attempts)",
                     state.id, state.instances, state.derived, state.seconds or 0.0,
                     ", ".join(d.name for d in self.destinations), attempts)
            return True
        return False
