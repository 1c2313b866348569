"""The Storage SCP: receives CT instances over DICOM into the spool.

Only CT Image Storage and Enhanced CT Image Storage (and Verification, C-ECHO) are negotiated; any other
SOP class is refused at association negotiation. With an allow list only those calling AE titles may
associate. A C-STORE is answered with success only once the instance is durable in the spool
(:meth:`ctdenoise.serve.spool.Spool.store`); an instance that is too large, not a valid CT image, or
beyond a limit is refused with an error status and not kept. One log line per association, no patient data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # pynetdicom makes these names at import
    CTImageStorage,
    EnhancedCTImageStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from ctdenoise.errors import CTDenoiseError, InputError
from ctdenoise.io.dicom_headers import check_header, read_dicom
from ctdenoise.serve.guard import AssociationGuard, AssociationLimits, is_idle_abort
from ctdenoise.serve.spool import OUT_OF_RESOURCES, Spool, SpoolRefusal

log = logging.getLogger("ctdenoise.serve")

STORAGE_SOP_CLASSES = (CTImageStorage, EnhancedCTImageStorage)
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                     ExplicitVRBigEndian, JPEGLosslessSV1, JPEG2000Lossless, RLELossless]
"""Accepted transfer syntaxes: the uncompressed ones and the lossless compressions the readers decode."""

#: C-STORE statuses (PS3.4 B.2.3): the data set does not match the SOP class / cannot be understood.
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


@dataclass
class ScpConfig:
    """Where and how to listen; ``max_instance_bytes`` bounds one received data set (None: unbounded), checked
    while it arrives; ``limits``: associations at once, per peer, and their timeouts
    (:class:`ctdenoise.serve.guard.AssociationLimits`)."""

    ae_title: str = "CTDENOISE"
    host: str = "127.0.0.1"
    port: int = 11112
    allow_ae: Sequence[str] = ()
    max_instance_bytes: int | None = None
    limits: AssociationLimits = AssociationLimits()


def _identify(path: Path, sop_uid: str) -> tuple[str, str]:
    """Check a received file's header with the readers' checks; its (SeriesInstanceUID, SOPInstanceUID)."""
    try:
        header = read_dicom(path, header_only=True)
        check_header(header, path)
    except InputError as exc:
        raise SpoolRefusal(DATASET_MISMATCH, exc.problem) from None
    series_uid = str(header.get("SeriesInstanceUID", "") or "")
    own_uid = str(header.get("SOPInstanceUID", "") or "")
    if not UID(series_uid).is_valid or not UID(own_uid).is_valid:
        raise SpoolRefusal(CANNOT_UNDERSTAND, "SeriesInstanceUID or SOPInstanceUID missing or invalid")
    if own_uid != sop_uid:
        raise SpoolRefusal(CANNOT_UNDERSTAND, "SOPInstanceUID differs from the C-STORE's Affected SOP Instance UID")
    return series_uid, own_uid


@dataclass
class AssociationStats:
    """What one association did: instances stored and refused, and the spool entries it stored into."""

    stored: int = 0
    refused: int = 0
    entries: set[str] = field(default_factory=set)


class ListenError(CTDenoiseError):
    """The SCP cannot listen on its address (port in use, address not on this machine, no permission)."""


class StorageSCP:
    """Receives into ``spool``; :meth:`start` listens (in background threads), :meth:`stop` stops listening."""

    def __init__(self, spool: Spool, config: ScpConfig) -> None:
        self.spool = spool
        self.config = config
        self._server: ThreadedAssociationServer | None = None
        self._counts: dict[int, AssociationStats] = {}
        self._lock = threading.Lock()
        self.ae = AE(ae_title=config.ae_title)
        self.guard = AssociationGuard(replace(config.limits, max_instance_bytes=config.max_instance_bytes))
        self.guard.configure(self.ae)
        for sop_class in STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        if config.allow_ae:
            self.ae.require_calling_aet = list(config.allow_ae)

    def start(self) -> None:
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_end, ["rejected"]),
                    (evt.EVT_ABORTED, self._on_end, ["aborted"]), (evt.EVT_RELEASED, self._on_end, ["released"]),
                    *self.guard.handlers()]
        try:
            self._server = self.ae.start_server((self.config.host, self.config.port), block=False,
                                                evt_handlers=handlers)
        except OSError as exc:
            raise ListenError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}") from None
        self.guard.start()

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one the system chose for port 0)."""
        return self._server.server_address[1] if self._server is not None else self.config.port

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting associations; let open ones finish for up to ``grace`` seconds, then abort them
        (instances not yet answered are not kept, and the sender sees the abort)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        for assoc in list(server.active_associations):
            assoc.join(grace)
            if assoc.is_alive():
                assoc.abort()
        self.guard.stop()

    # -- event handlers ------------------------------------------------------------------------------

    def _stats(self, event) -> AssociationStats:
        with self._lock:
            return self._counts.setdefault(id(event.assoc), AssociationStats())

    def _on_end(self, event, outcome: str) -> None:
        """The one log line of an association: it was rejected, aborted (a dropped connection too) or released.
        The entries it sent instances of are marked interrupted when it was aborted, and cleared when released
        (:meth:`ctdenoise.serve.spool.Spool.mark_interrupted`): a series whose sender stopped half-way is not
        derived as if it were complete."""
        with self._lock:
            stats = self._counts.pop(id(event.assoc), AssociationStats())
        aborted_because = self.guard.release(event.assoc)
        if aborted_because is not None:
            outcome = f"aborted by the node ({aborted_because})"
            stats.refused += not is_idle_abort(aborted_because)
        interrupted = outcome.startswith("aborted") and not is_idle_abort(aborted_because)
        if stats.entries and outcome != "rejected":
            try:
                self.spool.mark_interrupted(stats.entries, interrupted)
            except OSError as exc:
                log.error("cannot record the end of an association in the spool: %s", exc.strerror or exc)
        requestor = event.assoc.requestor
        log.info("association from %s (%s): %s, %d instances stored, %d refused", requestor.ae_title,
                 requestor.address, outcome, stats.stored, stats.refused)

    def _on_store(self, event) -> int:
        stats = self._stats(event)
        limit = self.config.max_instance_bytes
        try:
            if limit is not None and len(event.encoded_dataset(include_meta=False)) > limit:
                raise SpoolRefusal(OUT_OF_RESOURCES, f"instance larger than the limit of {limit} bytes")
            sop_uid = str(event.request.AffectedSOPInstanceUID)
            stats.entries.add(self.spool.store(event.encoded_dataset(), lambda path: _identify(path, sop_uid)))
        except SpoolRefusal as refusal:
            stats.refused += 1
            log.warning("refused an instance from %s: %s", event.assoc.requestor.ae_title, refusal.reason)
            return refusal.status
        except OSError as exc:
            stats.refused += 1
            log.error("cannot store an instance in the spool: %s", exc.strerror or exc)
            return OUT_OF_RESOURCES
        except Exception:  # logged here: pynetdicom's own report is silenced without -v
            stats.refused += 1
            log.exception("unexpected error while storing an instance; it was not kept")
            return CANNOT_UNDERSTAND
        stats.stored += 1
        return 0x0000
