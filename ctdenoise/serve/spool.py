"""The node's durable spool: received instances, per-series state, derived series, done and failed records.

Layout under SPOOL (every name is a hash or a counter, never a tag value)::

    .lock                          held (flock) by the running node
    tmp/                           instances being received; emptied at start
    series/<id>/                   one entry per received series, id = <sha256(SeriesInstanceUID)[:20]>-<generation>
        instances/<sha256(SOPInstanceUID)[:32]>.dcm
        state.json                 stage, destinations confirmed, attempts, last error
        derived/                   the derived series (published atomically)
    done/<id>.json                 record of a series every destination confirmed
    failed/<id>/                   an entry whose denoising failed, kept as it was for inspection

Every file is written to a temporary name, fsynced, renamed into place and its folder fsynced, so a kill
at any moment leaves the old state or the new one. An instance that arrives for a series whose entry is
already closed (quiet period over) starts a new generation of that series.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctdenoise.errors import CTDenoiseError
from ctdenoise.io.atomic import atomic_write_file, fsync_dir
from ctdenoise.jobs.outdir import exclusive_flock

STAGES = ("receiving", "closed", "derived")
"""Stages of an entry in ``series/``: receiving instances, closed (complete, to denoise), derived (to deliver)."""

STATE_FILE = "state.json"


class SpoolError(CTDenoiseError):
    """The spool folder cannot be used (locked by another node, unwritable, damaged state)."""


class SpoolRefusal(Exception):
    """An instance is refused; ``status`` is the DIMSE status to answer and ``reason`` says why (no patient data)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


OUT_OF_RESOURCES = 0xA700
"""C-STORE status "Refused: out of resources", answered when a limit is reached."""


def uid_hash(uid: str, length: int = 32) -> str:
    """The file-system name for a UID: the first ``length`` hex digits of its sha256."""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:length]


@dataclass
class DestinationState:
    """Delivery of one entry's derived series to one destination."""

    confirmed: bool = False
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str | None = None


@dataclass
class EntryState:
    """What ``state.json`` of an entry holds."""

    id: str
    stage: str = "receiving"
    created: float = field(default_factory=time.time)
    instances: int = 0
    derived: int = 0
    seconds: float | None = None
    error: str | None = None
    destinations: dict[str, DestinationState] = field(default_factory=dict)
    interrupted: bool = False
    """An association that sent instances of this entry was aborted, and none that sent some since was released."""

    @classmethod
    def from_json(cls, text: str) -> EntryState:
        data = json.loads(text)
        data["destinations"] = {k: DestinationState(**v) for k, v in data.get("destinations", {}).items()}
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def durable_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably: write, fsync, rename, fsync the folder."""
    atomic_write_file(path, lambda tmp: tmp.write_bytes(data), durable=True)


def tree_bytes(root: Path) -> int:
    """Total size of the files under ``root`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


class Spool:
    """The spool folder ``root``; one node at a time works on it (:meth:`locked`).

    ``max_bytes`` bounds the total size of the spool and ``max_instances`` the instances of one entry
    (None: unbounded); an instance beyond either is refused with :data:`OUT_OF_RESOURCES`.
    """

    def __init__(self, root: Path | str, *, max_bytes: int | None = None, max_instances: int | None = None) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.series = self.root / "series"
        self.done = self.root / "done"
        self.failed = self.root / "failed"
        self.max_bytes = max_bytes
        self.max_instances = max_instances
        self._lock = threading.Lock()
        self._open: dict[str, str] = {}  # series hash -> id of its receiving entry
        self._generations: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._last_arrival: dict[str, float] = {}
        self._bytes = 0

    # -- setup -----------------------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Create the layout, hold the spool's lock (SpoolError if another node holds it) and :meth:`recover`."""
        try:
            for folder in (self.tmp, self.series, self.done, self.failed):
                folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+")
        except OSError as exc:
            raise SpoolError(f"{self.root}: cannot create the spool: {exc.strerror or exc}") from None
        with handle, ExitStack() as held:
            try:
                held.enter_context(exclusive_flock(handle))
            except BlockingIOError:
                raise SpoolError(f"{self.root}: another ctdenoise serve is using this spool") from None
            self.recover()
            yield

    def recover(self) -> None:
        """Bring the spool to a consistent state after a kill: drop partial files, finish entries whose done
        record exists, and rebuild the in-memory view (open entries, counts, arrival times, size)."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        for entry in sorted(self.series.iterdir()):
            for partial in entry.rglob(".*.partial-*"):
                shutil.rmtree(partial) if partial.is_dir() else partial.unlink(missing_ok=True)
            if (self.done / f"{entry.name}.json").exists():
                shutil.rmtree(entry)
                continue
            (entry / "instances").mkdir(exist_ok=True)
            if not (entry / STATE_FILE).exists():  # killed while the entry was being created
                durable_write(entry / STATE_FILE, EntryState(id=entry.name).to_json().encode())
            state = self.state(entry.name)
            files = self.instance_files(entry.name)
            self._counts[entry.name] = len(files)
            if state.stage == "receiving":
                self._open[entry.name.rsplit("-", 1)[0]] = entry.name
                self._last_arrival[entry.name] = max((p.stat().st_mtime for p in files), default=state.created)
        for folder in (self.series, self.done, self.failed):
            for item in folder.iterdir():
                key, _, generation = item.name.split(".")[0].rpartition("-")
                if generation.isdigit():
                    self._generations[key] = max(self._generations.get(key, 0), int(generation))
        self._bytes = tree_bytes(self.root)

    # -- receiving -------------------------------------------------------------------------------------

    def store(self, data: bytes, identify: Callable[[Path], tuple[str, str]]) -> str:
        """Store one received instance durably and return its entry id.

        ``data`` is the Part 10 file; ``identify(path)`` checks the written temporary file and returns its
        (SeriesInstanceUID, SOPInstanceUID) or raises SpoolRefusal. A second copy of an instance replaces
        the first (same file name), so duplicates are stored once. Returns only once the file is renamed
        into its entry and the folder fsynced.
        """
        if self.max_bytes is not None and self._bytes + len(data) > self.max_bytes:
            raise SpoolRefusal(OUT_OF_RESOURCES, f"spool is full (limit {self.max_bytes} bytes)")
        tmp = self.tmp / f"{uuid.uuid4().hex}.dcm"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            series_uid, sop_uid = identify(tmp)
            with self._lock:
                entry_id = self._open.get(uid_hash(series_uid, 20)) or self._new_entry(uid_hash(series_uid, 20))
                target = self.series / entry_id / "instances" / f"{uid_hash(sop_uid)}.dcm"
                replaced = target.stat().st_size if target.exists() else None
                if replaced is None and self.max_instances is not None and self._counts[entry_id] >= self.max_instances:
                    raise SpoolRefusal(OUT_OF_RESOURCES, f"series already holds {self.max_instances} instances (limit)")
                os.replace(tmp, target)
                fsync_dir(target.parent)
                self._counts[entry_id] += replaced is None
                self._bytes += len(data) - (replaced or 0)
                self._last_arrival[entry_id] = time.time()
                return entry_id
        finally:
            tmp.unlink(missing_ok=True)

    def _new_entry(self, key: str) -> str:
        generation = self._generations.get(key, 0) + 1
        self._generations[key] = generation
        entry_id = f"{key}-{generation}"
        (self.series / entry_id / "instances").mkdir(parents=True)
        durable_write(self.series / entry_id / STATE_FILE, EntryState(id=entry_id).to_json().encode())
        fsync_dir(self.series)
        self._open[key] = entry_id
        self._counts[entry_id] = 0
        self._last_arrival[entry_id] = time.time()
        return entry_id

    def receiving(self) -> dict[str, float]:
        """Entry id -> time of its last arrival, for every entry still receiving."""
        with self._lock:
            return {entry_id: self._last_arrival[entry_id] for entry_id in self._open.values()}

    def mark_interrupted(self, entry_ids: Iterable[str], interrupted: bool) -> None:
        """Record whether the last association that sent instances of these entries was aborted (``interrupted``)
        or released; entries no longer receiving are left as they are."""
        with self._lock:
            for entry_id in entry_ids:
                if self._open.get(entry_id.rsplit("-", 1)[0]) != entry_id:
                    continue
                state = self.state(entry_id)
                if state.interrupted != interrupted:
                    state.interrupted = interrupted
                    self.save(state)

    def close(self, entry_id: str) -> EntryState:
        """End the receiving stage of an entry (later instances of its series open a new generation)."""
        with self._lock:
            self._open.pop(entry_id.rsplit("-", 1)[0], None)
            state = self.state(entry_id)
            state.stage = "closed"
            state.instances = self._counts.get(entry_id, 0)
            self.save(state)
            return state

    # -- processing ------------------------------------------------------------------------------------

    def state(self, entry_id: str) -> EntryState:
        """The saved state of an entry in ``series/``; SpoolError when it is unreadable."""
        path = self.series / entry_id / STATE_FILE
        try:
            return EntryState.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as exc:
            raise SpoolError(f"{path}: cannot read the entry state ({exc})") from None

    def save(self, state: EntryState) -> None:
        """Replace the entry's ``state.json`` durably."""
        durable_write(self.series / state.id / STATE_FILE, state.to_json().encode())

    def entries(self, stage: str) -> list[EntryState]:
        """States of the entries in ``stage``, oldest first."""
        states = [self.state(p.name) for p in sorted(self.series.iterdir()) if (p / STATE_FILE).exists()]
        return sorted((s for s in states if s.stage == stage), key=lambda s: s.created)

    def instance_files(self, entry_id: str) -> list[Path]:
        return sorted((self.series / entry_id / "instances").glob("*.dcm"))

    def instances_dir(self, entry_id: str) -> Path:
        return self.series / entry_id / "instances"

    def derived_dir(self, entry_id: str) -> Path:
        return self.series / entry_id / "derived"

    def derived_files(self, entry_id: str) -> list[Path]:
        return sorted(self.derived_dir(entry_id).rglob("*.dcm"))

    def derive(self, entry_id: str, write: Callable[[Path, Path], int]) -> int:
        """Run ``write(instances_dir, derived_dir)``, which publishes the entry's derived series (replacing one
        left by a killed run), and count it in the spool's size; returns what ``write`` returned."""
        before = tree_bytes(self.derived_dir(entry_id))
        written = write(self.instances_dir(entry_id), self.derived_dir(entry_id))
        with self._lock:
            self._bytes += tree_bytes(self.derived_dir(entry_id)) - before
        return written

    def finish(self, state: EntryState) -> None:
        """Every destination confirmed: write ``done/<id>.json`` (no patient data), then drop the entry."""
        entry = self.series / state.id
        size = tree_bytes(entry)
        record = {"id": state.id, "instances": state.instances, "derived": state.derived, "seconds": state.seconds,
                  "finished": time.time(), "destinations": sorted(state.destinations)}
        durable_write(self.done / f"{state.id}.json", json.dumps(record, indent=2).encode())
        shutil.rmtree(entry)
        with self._lock:
            self._bytes -= size
            self._counts.pop(state.id, None)

    def fail(self, state: EntryState, error: str) -> None:
        """Move an entry that cannot be denoised to ``failed/`` with its error recorded."""
        state.error = error
        self.save(state)
        os.replace(self.series / state.id, self.failed / state.id)
        fsync_dir(self.failed)
        with self._lock:
            self._counts.pop(state.id, None)


STATUS_DONE_LISTED = 100
"""How many of the most recently finished series the status view lists (``counts`` has them all)."""


def spool_status(root: Path | str) -> dict:
    """A JSON-ready view of a spool, readable while a node runs: pending entries with their stage and
    destinations, the :data:`STATUS_DONE_LISTED` latest done records and the failed entries. Holds hashes,
    counts, times and destination names only, no patient data."""
    root = Path(root)
    if not (root / "series").is_dir():
        raise SpoolError(f"{root}: not a ctdenoise spool (no series/ folder)")
    pending: list[dict] = []
    failed: list[dict] = []
    for folder, into in ((root / "series", pending), (root / "failed", failed)):
        for entry in sorted(folder.iterdir()):
            try:
                state = EntryState.from_json((entry / STATE_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError):
                continue  # an entry being created or removed right now
            view = asdict(state)
            if state.stage == "receiving":
                view["instances"] = len(list((entry / "instances").glob("*.dcm")))
            into.append(view)
    done = []
    for record in sorted((root / "done").glob("*.json")):
        try:
            done.append(json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    done.sort(key=lambda record: record.get("finished", 0))
    return {
        "spool": str(root),
        "counts": {"pending": len(pending), "done": len(done), "failed": len(failed)},
        "pending": pending,
        "done": done[-STATUS_DONE_LISTED:],
        "failed": failed,
    }
