"""Destinations of a derived series: a folder, a DICOM node (C-STORE) and a DICOMweb server (STOW-RS).

Each destination's :meth:`deliver` sends every file and returns only once the destination confirmed
every one of them; otherwise it raises :class:`DeliveryError` and the node retries later
(:func:`next_attempt`). Delivering the same files again is harmless: a PACS keys instances on their SOP
Instance UID, and a folder destination names files by a hash of it, so a re-send overwrites.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, EnhancedCTImageStorage  # type: ignore[attr-defined]  # made at import

from ctdenoise.errors import ConfigError
from ctdenoise.io.atomic import fsync_dir
from ctdenoise.serve.spool import durable_write, uid_hash

#: C-STORE statuses that mean "stored": success and the warnings of PS3.4 B.2.3 (coercion, elements discarded).
STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})

STOW_BATCH_BYTES = 32 * 1024 * 1024
"""Largest STOW-RS request body; a longer series is sent in several requests."""


class DeliveryError(Exception):
    """A destination did not confirm a delivery; the message says why (no patient data)."""


class Destination(Protocol):
    @property
    def name(self) -> str: ...  # read-only: the node only names a destination in its records

    def deliver(self, files: Sequence[Path]) -> None: ...


def next_attempt(attempts: int, now: float, initial: float, maximum: float) -> float:
    """When to retry after ``attempts`` failed attempts: ``initial`` seconds doubled per failure, at most ``maximum``."""
    return now + min(initial * 2 ** max(attempts - 1, 0), maximum)


@dataclass
class FolderDestination:
    """Writes the derived series to ``root/<sha256(derived SeriesInstanceUID)[:20]>/<sha256(SOPInstanceUID)[:32]>.dcm``,
    each file atomically and fsynced."""

    root: Path

    @property
    def name(self) -> str:
        return f"output:{self.root}"

    def deliver(self, files: Sequence[Path]) -> None:
        for path in files:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            folder = self.root / uid_hash(str(header.SeriesInstanceUID), 20)
            try:
                if not folder.is_dir():
                    folder.mkdir(parents=True)
                    fsync_dir(self.root)
                durable_write(folder / f"{uid_hash(str(header.SOPInstanceUID))}.dcm", path.read_bytes())
            except OSError as exc:
                raise DeliveryError(f"cannot write to {folder}: {exc.strerror or exc}") from None


_CSTORE_SPEC = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")


@dataclass
class CStoreDestination:
    """A DICOM node reached with C-STORE: called AE title ``ae_title`` at ``host:port``."""

    ae_title: str
    host: str
    port: int
    calling_ae: str = "CTDENOISE"
    timeout: float = 30.0

    @classmethod
    def parse(cls, spec: str, calling_ae: str) -> CStoreDestination:
        """``AET@HOST:PORT`` (ConfigError otherwise)."""
        match = _CSTORE_SPEC.match(spec)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ConfigError("forward", f"{spec!r} is not AET@HOST:PORT (AE title of at most 16 characters)")
        return cls(match["aet"], match["host"], int(match["port"]), calling_ae)

    @property
    def name(self) -> str:
        return f"forward:{self.ae_title}@{self.host}:{self.port}"

    def deliver(self, files: Sequence[Path]) -> None:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        for sop_class in (CTImageStorage, EnhancedCTImageStorage):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian])
        assoc = ae.associate(self.host, self.port, ae_title=self.ae_title)
        if not assoc.is_established:
            raise DeliveryError(f"{self.name}: association not established (peer down, refused or timed out)")
        try:
            for path in files:
                status = assoc.send_c_store(path)
                code = status.get("Status") if status else None
                if code not in STORED_STATUSES:
                    reason = "no response" if code is None else f"status 0x{code:04X}"
                    raise DeliveryError(f"{self.name}: C-STORE of {path.name} failed ({reason})")
        except (OSError, RuntimeError, ValueError) as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        finally:
            if assoc.is_established:
                assoc.release()
            else:
                assoc.abort()


@dataclass
class StowDestination:
    """A DICOMweb server reached with STOW-RS: ``url`` is its studies endpoint (``.../dicom-web/studies``)."""

    url: str
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ConfigError("stow", f"{self.url!r} is not an http(s) URL (the STOW-RS studies endpoint)")

    @property
    def name(self) -> str:
        return f"stow:{self.url}"

    def deliver(self, files: Sequence[Path]) -> None:
        for batch in _batches(files, STOW_BATCH_BYTES):
            self._post(batch)

    def _post(self, files: Sequence[Path]) -> None:
        boundary = f"ctdenoise-{uuid.uuid4().hex}"
        parts = [b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), p.read_bytes())
                 for p in files]
        body = b"".join(parts) + b"--%s--\r\n" % boundary.encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                code, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"{self.name}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"{self.name}: {getattr(exc, 'reason', exc)}") from None
        failed = _failed_instances(payload)
        if code not in (200, 202) or failed:
            raise DeliveryError(f"{self.name}: HTTP {code}, {failed} of {len(files)} instances refused")


def _batches(files: Sequence[Path], limit: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if batch and size + length > limit:
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def _failed_instances(payload: bytes) -> int:
    """How many instances a STOW-RS response lists in its Failed SOP Sequence (0008,1198)."""
    try:
        response = json.loads(payload or b"{}")
    except ValueError:
        return 0
    if isinstance(response, list):
        response = response[0] if response else {}
    return len(response.get("00081198", {}).get("Value", [])) if isinstance(response, dict) else 0

