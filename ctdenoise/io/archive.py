"""Reading ``.zip`` archives of DICOM files safely: checked first, then extracted into a temporary folder only.

Before a byte is written, every member is checked: a name that is absolute, holds a ``..`` component,
a drive or a backslash path (zip-slip), a symbolic link, too many members, a declared total size over
the limit or over the free space of the temporary folder, or a compression ratio no DICOM file has
(zip bomb) refuses the whole archive with :class:`ctdenoise.errors.InputError` naming the archive and
the member. Members are then copied with a byte cap, so a member that inflates past its declared size
is refused too. The caller owns the temporary folder (:func:`extracted_zip` removes it on exit).
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from ctdenoise.errors import InputError

MAX_MEMBERS = 200_000
"""Most members an archive may hold (a CT archive of 1000 series of 200 slices)."""

MAX_TOTAL_BYTES = 64 * 1024**3
"""Largest declared uncompressed size of all members together (64 GiB)."""

MAX_RATIO = 200
"""Largest uncompressed/compressed size ratio of a member over RATIO_FLOOR_BYTES (CT slices deflate ~2-10x)."""

RATIO_FLOOR_BYTES = 1024**2
"""Members smaller than this are not ratio-checked (tiny files compress arbitrarily well)."""

_CHUNK = 1024**2


def is_zip_input(path: Path) -> bool:
    """True for an existing file whose name ends in .zip (any case)."""
    return path.is_file() and path.suffix.lower() == ".zip"


def _member_path(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The safe relative path of a file member, None for a folder entry; InputError for an unsafe one."""
    name = info.filename
    if info.is_dir():
        return None
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or ":" in parts[0] or ".." in parts or "\0" in name:
        raise InputError(archive, f"member {name!r} would be extracted outside the extraction folder "
                                  "(absolute path or '..'); refusing the archive")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(archive, f"member {name!r} is a symbolic link; refusing the archive")
    return PurePosixPath(*parts)


def check_zip(archive: Path, handle: zipfile.ZipFile, free_bytes: int, *, max_total_bytes: int = MAX_TOTAL_BYTES,
              max_ratio: float = MAX_RATIO, max_members: int = MAX_MEMBERS) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The file members of ``handle`` with their safe paths; InputError (nothing extracted) for an unsafe archive."""
    infos = handle.infolist()
    if len(infos) > max_members:
        raise InputError(archive, f"holds {len(infos):,} members, more than the limit of {max_members:,}")
    members = []
    total = 0
    for info in infos:
        path = _member_path(archive, info)
        if path is None:
            continue
        total += info.file_size
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise InputError(archive, f"member {info.filename!r} inflates {info.compress_size:,} bytes to "
                                      f"{info.file_size:,} (more than {max_ratio:g}x: a zip bomb?); refusing the archive")
        members.append((info, path))
    if total > max_total_bytes:
        raise InputError(archive, f"declares {total:,} bytes uncompressed, more than the limit of {max_total_bytes:,}; "
                                  "refusing the archive")
    if total > free_bytes:
        raise InputError(archive, f"declares {total:,} bytes uncompressed but the temporary folder has only "
                                  f"{free_bytes:,} bytes free (set TMPDIR to a larger disk)")
    return members


def _copy_capped(archive: Path, handle: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    with handle.open(info) as source, open(target, "xb") as sink:
        left = info.file_size
        while chunk := source.read(min(_CHUNK, left + 1)):
            left -= len(chunk)
            if left < 0:
                raise InputError(archive, f"member {info.filename!r} inflates past its declared size; refusing the archive")
            sink.write(chunk)


def extract_zip(archive: Path, dest: Path, **limits) -> None:
    """Check ``archive`` (:func:`check_zip`, ``limits`` passed on) and extract its files below the folder ``dest``.

    InputError for an archive that is unsafe, damaged (bad CRC, truncated) or not a zip file.
    """
    try:
        with zipfile.ZipFile(archive) as handle:
            members = check_zip(archive, handle, shutil.disk_usage(dest).free, **limits)
            root = dest.resolve()
            for info, relative in members:
                target = root.joinpath(*relative.parts)
                if not target.resolve().is_relative_to(root):  # belt and braces after the name checks
                    raise InputError(archive, f"member {info.filename!r} resolves outside the extraction folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_capped(archive, handle, info, target)
    except zipfile.BadZipFile as exc:
        raise InputError(archive, f"not a readable zip archive ({exc})") from None
    except (OSError, EOFError, RuntimeError, NotImplementedError) as exc:  # zipfile's errors for damaged/encrypted members
        raise InputError(archive, f"cannot extract: {type(exc).__name__}: {exc}") from None


@contextmanager
def extracted_zip(archive: Path, **limits) -> Iterator[Path]:
    """Yield a new temporary folder holding the checked, extracted files of ``archive``; removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix="ctdenoise-zip-"))
    try:
        extract_zip(archive, folder, **limits)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
