"""Following a DICOMDIR (DICOM media index, PS3.10) to the files its records reference."""

from __future__ import annotations

from pathlib import Path

from ctdenoise.errors import InputError, NotDicomError
from ctdenoise.io.dicom_headers import DICOMDIR_SOP_CLASS, read_dicom, sop_class


def is_dicomdir(path: Path) -> bool:
    """True for a readable file whose SOP class is Media Storage Directory Storage (a DICOMDIR)."""
    if not path.is_file():
        return False
    try:
        return sop_class(read_dicom(path, header_only=True)) == DICOMDIR_SOP_CLASS
    except NotDicomError:
        return False


def dicomdir_files(path: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files referenced by the records of the DICOMDIR ``path`` (in record order, each once) and the
    problems found: ``(path, reason)`` for a referenced file that is missing or whose ReferencedFileID
    points outside the DICOMDIR's folder. InputError if ``path`` is not a readable DICOMDIR."""
    try:
        ds = read_dicom(path, header_only=True)
    except NotDicomError as error:
        raise InputError(path, error.problem) from None
    if sop_class(ds) != DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" not in ds:
        raise InputError(path, "not a DICOMDIR (no directory records)")
    base = path.parent  # not resolved: the files keep the path the user gave (series keys are relative to it)
    resolved_base = base.resolve()
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for record in ds.DirectoryRecordSequence:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        referenced = base.joinpath(*parts)
        if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts) or not referenced.resolve().is_relative_to(resolved_base):
            problems.append((path, f"a record references {'/'.join(parts)!r}, outside the DICOMDIR's folder; skipped"))
        elif not referenced.is_file():
            problems.append((referenced, "referenced by the DICOMDIR but missing"))
        elif referenced not in files:
            files.append(referenced)
    return files, problems
