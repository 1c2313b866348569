"""What one peer can hold of the node: associations at once, connections that say nothing, associations that
store nothing, and the bytes of one instance while it arrives.

pynetdicom accepts 10 associations by default and counts a TCP connection that never sends an association
request as one for 30 s, so a few idle or silent connections would lock every sender out. The
:class:`AssociationGuard` configures the AE's limits and timeouts from :class:`AssociationLimits` and adds
what pynetdicom lacks:

* a limit per peer (IP address): a connection beyond it gets :data:`OVER_LIMIT_ACSE_TIMEOUT` to send its
  request, which is then rejected as "local limit exceeded" (transient, so a sender tries again later);
* an idle limit: an association that has received no instance data (C-ECHO does not count) for
  ``idle_timeout`` seconds is aborted;
* the instance size limit applied while the data arrives: once the data set being received exceeds
  ``max_instance_bytes``, the association is aborted, so at most that much of it is ever buffered.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pynetdicom import AE, evt

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger("ctdenoise.serve")

OVER_LIMIT_ACSE_TIMEOUT = 1.0
"""Seconds a connection beyond its peer's limit has to send its association request (which is then rejected)."""

WATCH_INTERVAL = 0.2
"""Seconds between two checks for idle associations."""

P_DATA_TF = 0x04
"""PDU type of P-DATA-TF (PS3.8 9.3.5), the PDU that carries DIMSE commands and data sets."""


@dataclass(frozen=True)
class AssociationLimits:
    """Bounds on associations. ``max_associations``: at once, from every peer together; ``max_per_peer``: at
    once from one IP address; ``acse_timeout``: seconds a new connection has to send its association request
    (and a release its reply); ``network_timeout``: seconds of silence within an association; ``idle_timeout``:
    seconds an association may go without receiving instance data; ``max_instance_bytes``: the largest data
    set received (None: unbounded)."""

    max_associations: int = 64
    max_per_peer: int = 32
    acse_timeout: float = 10.0
    network_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_instance_bytes: int | None = None


@dataclass
class _Tracked:
    """An established association: when it last received instance data, the data set bytes of the message
    being received, and why the guard aborted it (None while it has not)."""

    assoc: Association
    last_data: float
    message_bytes: int = 0
    aborted_because: str | None = None


def dataset_fragments(pdu: bytes) -> list[tuple[int, bool]]:
    """(data bytes, is the last fragment) of each data set fragment in the raw P-DATA-TF ``pdu`` (PS3.8 9.3.5
    and annex E.2); command fragments are listed with -1 bytes; any other PDU gives []."""
    if len(pdu) < 6 or pdu[0] != P_DATA_TF:
        return []
    fragments, offset = [], 6
    while offset + 6 <= len(pdu):
        (length,) = struct.unpack_from(">I", pdu, offset)
        header = pdu[offset + 5]
        fragments.append((-1 if header & 1 else length - 2, bool(header & 2)))
        offset += 4 + length
    return fragments


class AssociationGuard:
    """Applies :class:`AssociationLimits` to an AE's associations (:meth:`configure`, :meth:`handlers`, a
    watchdog thread between :meth:`start` and :meth:`stop`)."""

    def __init__(self, limits: AssociationLimits) -> None:
        self.limits = limits
        self._tracked: dict[int, _Tracked] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._ae: AE | None = None

    def configure(self, ae: AE) -> None:
        """Set the AE's association limit and timeouts."""
        self._ae = ae
        ae.maximum_associations = self.limits.max_associations
        ae.acse_timeout = self.limits.acse_timeout
        ae.network_timeout = self.limits.network_timeout
        ae.dimse_timeout = self.limits.network_timeout

    def handlers(self) -> list[tuple]:
        """The pynetdicom event handlers that enforce the limits."""
        return [(evt.EVT_CONN_OPEN, self._on_connection), (evt.EVT_REQUESTED, self._on_request),
                (evt.EVT_ESTABLISHED, self._on_established), (evt.EVT_DATA_RECV, self._on_data)]

    def start(self) -> None:
        self._stopping.clear()
        self._watchdog = threading.Thread(target=self._watch, name="ctdenoise-association-guard", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None

    def release(self, assoc) -> str | None:
        """Stop tracking ``assoc`` (it ended); why the guard aborted it, or None when it did not."""
        with self._lock:
            tracked = self._tracked.pop(id(assoc), None)
        return tracked.aborted_because if tracked is not None else None

    # -- handlers ------------------------------------------------------------------------------------

    def _peer_associations(self, assoc) -> int:
        address = assoc.requestor.address
        return sum(1 for other in self._ae.active_associations
                   if other.is_acceptor and other.requestor.address == address) if self._ae else 0

    def _on_connection(self, event) -> None:
        if self._peer_associations(event.assoc) >= self.limits.max_per_peer:  # this one is not running yet
            event.assoc.acse_timeout = OVER_LIMIT_ACSE_TIMEOUT

    def _on_request(self, event) -> None:
        assoc = event.assoc
        if self._peer_associations(assoc) > self.limits.max_per_peer:  # this one included
            log.warning("association from %s (%s) rejected: that peer already holds %d associations (limit)",
                        assoc.requestor.ae_title, assoc.requestor.address, self.limits.max_per_peer)
            assoc.acse.send_reject(0x02, 0x03, 0x02)  # rejected transient, service provider, local limit exceeded
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()

    def _on_established(self, event) -> None:
        with self._lock:
            self._tracked[id(event.assoc)] = _Tracked(event.assoc, time.monotonic())

    def _on_data(self, event) -> None:
        fragments = dataset_fragments(event.data)
        if not fragments:
            return
        limit = self.limits.max_instance_bytes
        with self._lock:
            tracked = self._tracked.get(id(event.assoc))
            if tracked is None or tracked.aborted_because is not None:
                return
            for size, _last in fragments:
                if size < 0:  # a command: the next data set starts from zero
                    tracked.message_bytes = 0
                    continue
                tracked.last_data = time.monotonic()
                tracked.message_bytes += size
                if limit is not None and tracked.message_bytes > limit:
                    tracked.aborted_because = f"an instance larger than the limit of {limit} bytes was being sent"
                    break
            else:
                return
        # Aborting waits for the network thread, which runs this handler: abort from another thread.
        threading.Thread(target=event.assoc.abort, name="ctdenoise-abort", daemon=True).start()

    def _watch(self) -> None:
        """Abort associations idle for longer than ``idle_timeout``; forget those that ended unseen."""
        while not self._stopping.wait(WATCH_INTERVAL):
            now = time.monotonic()
            idle: list[_Tracked] = []
            with self._lock:
                for key, tracked in list(self._tracked.items()):
                    if not tracked.assoc.is_alive():
                        del self._tracked[key]
                    elif tracked.aborted_because is None and now - tracked.last_data > self.limits.idle_timeout:
                        tracked.aborted_because = f"idle: no instance data for {self.limits.idle_timeout:g} s"
                        idle.append(tracked)
            for tracked in idle:
                tracked.assoc.abort()


def is_idle_abort(reason: str | None) -> bool:
    """True when the guard aborted an association for idleness (it had finished what it sent)."""
    return reason is not None and reason.startswith("idle")

