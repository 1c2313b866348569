"""Finding the image series under a file or folder tree without reading any pixel data."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import nibabel as nib
from nibabel.spatialimages import SpatialImage

from ctdenoise.errors import EmptyInputError, InputError, NotCTError, NotDicomError
from ctdenoise.io.archive import is_zip_input
from ctdenoise.io.dicom_headers import check_ct, is_enhanced_ct, read_dicom
from ctdenoise.io.dicomdir import dicomdir_files, is_dicomdir
from ctdenoise.io.image_files import image_kind, image_suffix
from ctdenoise.io.read_warnings import collect_warnings, without_force_advice

DATA_COMPANION_SUFFIXES = (".raw", ".zraw", ".raw.gz")
"""Voxel files of .mhd/.nhdr headers: skipped silently when their header sits next to them."""


@dataclass(frozen=True)
class SeriesRef:
    """One readable series found by :func:`find_series`.

    ``paths``: its files (sorted by name; reading sorts slices by position). ``series_uid``:
    SeriesInstanceUID for DICOM, None for image files. ``kind``: "dicom", "dicom-enhanced",
    "nifti" or "itk". ``key``: a stable, filesystem-safe relative id (POSIX separators) to use as
    an output folder name. ``problems``: ``(path, reason)`` for files skipped near this series.
    ``instance_uids``: the SOPInstanceUID of each file in ``paths`` order (DICOM; empty for image files).
    ``warnings``: ``(path, message)`` for each warning pydicom raised reading a header of this series
    (collected only inside :func:`ctdenoise.io.read_warnings.route_warnings`; messages cleaned).
    ``frames``: NumberOfFrames of an Enhanced CT file (None otherwise).
    """

    paths: tuple[Path, ...]
    series_uid: str | None
    kind: str
    key: str
    problems: tuple[tuple[Path, str], ...] = field(default=())
    instance_uids: tuple[str, ...] = field(default=())
    warnings: tuple[tuple[Path, str], ...] = field(default=())
    frames: int | None = None


MAX_NAME_CHARS = 96
"""Longest output folder/file name component derived from input names (file systems allow 255 bytes)."""


def safe_name(component: str) -> str:
    """A file-system-safe name for one output path component derived from input names or DICOM values.

    Keeps ASCII letters, digits, '.', '_' and '-' (runs of anything else, separators and control
    characters included, become '_'); never starts with '.', '_' or '-' nor ends with '.' or '_',
    so it can be neither '..', hidden, nor read as a command-line option; never empty ('x'); at most MAX_NAME_CHARS characters (a longer one is cut
    and ends with 8 hex digits of its sha1, so different long names stay different).
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", component).lstrip("._-").rstrip("._") or "x"
    if len(cleaned) > MAX_NAME_CHARS:
        digest = hashlib.sha1(component.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        cleaned = f"{cleaned[: MAX_NAME_CHARS - 9].rstrip('._')}-{digest}"
    return cleaned


def _relative_parts(folder: Path, root: Path) -> list[str]:
    try:
        return [safe_name(p) for p in folder.relative_to(root).parts]
    except ValueError:
        return []


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def archives_under(root: Path | str) -> list[Path]:
    """The .zip archives in the folder tree ``root`` (hidden files and folders ignored, symlinked folders not
    followed), sorted; [] for a file. :func:`find_series` does not open them: a caller that extracts them
    (``ctdenoise denoise``) finds their series with :func:`find_series` on the extracted folder."""
    root = Path(root)
    return [path for path in _files_under(root) if is_zip_input(path)] if root.is_dir() else []


def _is_companion(path: Path) -> bool:
    name = path.name.lower()
    for suffix in DATA_COMPANION_SUFFIXES:
        if name.endswith(suffix):
            stem = path.name[: -len(suffix)]
            return any((path.parent / f"{stem}{ext}").exists() for ext in (".mhd", ".nhdr", ".MHD", ".NHDR"))
    return False


def _dicom_label(uid: str, series_number) -> str:
    digest = hashlib.sha1(uid.encode()).hexdigest()[:8]
    number = str(series_number).strip() if series_number not in (None, "") else "x"
    return f"series{safe_name(number)}-{digest}"


def find_series(root: Path | str, *, skip_archives: bool = False) -> list[SeriesRef]:
    """Scan a file, folder or tree and return its CT series, ordered by key.

    DICOM files are grouped by SeriesInstanceUID (an Enhanced CT file is a series of its own);
    each NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) file is one series.
    A DICOMDIR file as ``root`` stands for the files its records reference (keys relative to its folder).
    Hidden files and folders are ignored. Files that are not DICOM, not CT, or unreadable are
    listed in the ``problems`` of the nearest series, and so are .zip archives in the tree ("not opened
    here"), unless ``skip_archives`` (the caller opens them: :func:`archives_under`). Raises InputError if
    ``root`` does not exist and EmptyInputError if no series is found (the message lists the first skipped files).
    """
    root = Path(root)
    if not root.exists():
        raise InputError(root, "no such file or folder")
    base = root.parent if root.is_file() else root
    dicom_groups: dict[str, list[Path]] = defaultdict(list)
    uids: dict[Path, str] = {}
    file_warnings: dict[Path, list[str]] = {}
    labels: dict[str, str] = {}
    refs: list[SeriesRef] = []
    problems: list[tuple[Path, str]] = []
    if is_dicomdir(root):
        files, problems = dicomdir_files(root)
    else:
        files = _files_under(root)
    for path in files:
        kind, suffix = image_kind(path), image_suffix(path)
        if kind is not None and suffix is not None:  # a kind means a suffix
            stem = path.name[: -len(suffix)]
            key = "/".join(_relative_parts(path.parent, base) + [safe_name(stem)])
            refs.append(SeriesRef((path,), None, kind, key))
            continue
        if _is_companion(path):
            continue
        if is_zip_input(path):
            if not skip_archives:
                problems.append((path, "a .zip archive inside the folder is not opened here; give it as an input "
                                       "of its own, or run ctdenoise denoise on the folder (which opens it)"))
            continue
        try:
            with collect_warnings() as raised:
                ds = read_dicom(path, header_only=True)
            check_ct(ds, path)
        except (NotDicomError, NotCTError) as exc:
            problems.append((path, without_force_advice(exc.problem)))
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        uids[path] = str(ds.get("SOPInstanceUID", "") or "")
        file_warnings[path] = raised
        if is_enhanced_ct(ds):
            label = f"{_dicom_label(uid or path.name, ds.get('SeriesNumber'))}-{safe_name(path.stem)}"
            key = "/".join(_relative_parts(path.parent, base) + [label])
            refs.append(SeriesRef((path,), uid or None, "dicom-enhanced", key, instance_uids=(uids[path],),
                                  warnings=_warnings_of([path], file_warnings), frames=_frames(ds)))
            continue
        group = uid or f"no-uid:{path.parent}"
        dicom_groups[group].append(path)
        labels.setdefault(group, _dicom_label(group, ds.get("SeriesNumber")))
    for group, paths in dicom_groups.items():
        key = "/".join(_relative_parts(_common_folder(paths), base) + [labels[group]])
        ordered = sorted(paths)
        refs.append(SeriesRef(tuple(ordered), None if group.startswith("no-uid:") else group, "dicom", key,
                              instance_uids=tuple(uids[p] for p in ordered), warnings=_warnings_of(ordered, file_warnings)))
    if not refs:
        listed = "; ".join(f"{p.name}: {why}" for p, why in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise EmptyInputError(root, f"no CT series found{': ' + listed + more if problems else ' (no files)'}")
    return _attach_problems(_unique_keys(refs), problems)


def _warnings_of(paths: list[Path], file_warnings: dict[Path, list[str]]) -> tuple[tuple[Path, str], ...]:
    return tuple((path, message) for path in paths for message in file_warnings.get(path, ()))


def _frames(ds) -> int | None:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None


def count_slices(ref: SeriesRef) -> int | None:
    """The number of slices reading ``ref`` gives, from discovery or the image header; None if unknown
    (an unreadable header: reading the series then reports the problem)."""
    if ref.kind == "dicom":
        return len(ref.paths)
    if ref.kind == "dicom-enhanced":
        return ref.frames
    try:
        if ref.kind == "nifti":
            shape = tuple(cast(SpatialImage, nib.load(ref.paths[0])).shape)
        else:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(ref.paths[0]))
            reader.ReadImageInformation()
            shape = tuple(reader.GetSize())
    except Exception:  # noqa: BLE001 - nibabel and ITK raise many types; reading reports the problem
        return None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return 1 if len(shape) == 2 else (int(shape[2]) if len(shape) == 3 else None)


def _common_folder(paths: list[Path]) -> Path:
    folders = {p.parent for p in paths}
    common = folders.pop()
    for folder in folders:
        while common not in (folder, *folder.parents):
            common = common.parent
    return common


def _unique_keys(refs: list[SeriesRef]) -> list[SeriesRef]:
    seen: dict[str, int] = {}
    unique = []
    for ref in sorted(refs, key=lambda r: (r.key, str(r.paths[0]))):
        count = seen.get(ref.key, 0)
        seen[ref.key] = count + 1
        unique.append(ref if count == 0 else replace(ref, key=f"{ref.key}-{count + 1}"))
    return unique


def _shared_parts(folder: Path, other: Path) -> int:
    """How many leading path parts ``folder`` and ``other`` have in common."""
    mine, theirs = folder.parts, other.parts
    return next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))


def _attach_problems(refs: list[SeriesRef], problems: list[tuple[Path, str]]) -> list[SeriesRef]:
    """Give each skipped file to the series whose folder shares the longest path prefix with it."""
    by_ref: dict[int, list[tuple[Path, str]]] = defaultdict(list)
    for path, why in problems:
        best = max(range(len(refs)), key=lambda i: (_shared_parts(refs[i].paths[0].parent, path.parent), -i))
        by_ref[best].append((path, why))
    return [replace(ref, problems=tuple(by_ref.get(i, ()))) for i, ref in enumerate(refs)]
