"""What each published output series was made from, so a resumed batch notices an input that changed.

For every series it publishes, a batch run writes ``OUTDIR/.ctdenoise-manifest/<key>.json`` (atomically,
after the series folder is published): the source's :class:`SourceRecord` and the series' result as the
report listed it. A re-run compares the input it finds with the record: equal means the output is up to
date (the earlier result is reported again); different means the input changed (for DICOM: other SOP
Instance UIDs or another number of files; for image files: other bytes). A published folder without a
readable record (written by an older ctdenoise, or a run killed between publishing and recording) counts
as changed: nothing proves it matches its input. The record is removed before a series is redone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ctdenoise.io import SeriesRef
from ctdenoise.io.discover import DATA_COMPANION_SUFFIXES
from ctdenoise.io.hashing import hash_file_into

MANIFEST_DIR = ".ctdenoise-manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SourceRecord:
    """The identity of a series' input: ``kind``, ``files`` (DICOM files, or 1) and a sha256 ``fingerprint``
    of the sorted SOP Instance UIDs (DICOM) or of the file bytes (NIfTI/NRRD/MHA and their data files)."""

    kind: str
    files: int
    fingerprint: str

    def change_from(self, earlier: SourceRecord) -> str | None:
        """None when equal to ``earlier``; else a short text saying what changed (no patient data)."""
        if self == earlier:
            return None
        if self.kind != earlier.kind:
            return f"input changed from {earlier.kind} to {self.kind}"
        if self.files != earlier.files:
            return f"input changed: {earlier.files} files then, {self.files} now"
        what = "SOP Instance UIDs" if self.kind.startswith("dicom") else "file contents"
        return f"input changed: same number of files, different {what}"


def _image_files(path: Path) -> list[Path]:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return [path, *(p for s in DATA_COMPANION_SUFFIXES if (p := path.with_name(stem + s)).is_file())]


def source_record(ref: SeriesRef) -> SourceRecord:
    """The :class:`SourceRecord` of the series ``ref`` (image files are hashed in full; DICOM by UIDs only)."""
    digest = hashlib.sha256()
    if ref.kind.startswith("dicom"):
        for uid in sorted(ref.instance_uids):
            digest.update(uid.encode() + b"\n")
    else:
        for path in _image_files(ref.paths[0]):
            hash_file_into(digest, path)
    return SourceRecord(ref.kind, len(ref.paths), digest.hexdigest())


def manifest_path(out_dir: Path, key: str) -> Path:
    """Where the record of the output series ``key`` lives."""
    return out_dir / MANIFEST_DIR / f"{key}.json"


def read_manifest(out_dir: Path, key: str) -> tuple[SourceRecord, dict] | None:
    """(source record, earlier result as a dict) of ``key``, or None when absent or unreadable."""
    try:
        payload = json.loads(manifest_path(out_dir, key).read_text(encoding="utf-8"))
        return SourceRecord(**payload["source"]), dict(payload["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def manifest_text(source: SourceRecord, result: dict) -> str:
    """The JSON text of one record."""
    return json.dumps({"manifest_version": MANIFEST_VERSION, "source": asdict(source), "result": result}, indent=2)


def remove_manifest(out_dir: Path, key: str) -> None:
    """Forget the record of ``key`` (before its output is redone or replaced)."""
    manifest_path(out_dir, key).unlink(missing_ok=True)

