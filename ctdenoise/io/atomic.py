"""Atomic publication of output files and folders, and the rule that outputs never overwrite inputs.

Everything is first written into a hidden temporary file or folder next to the target (same file
system), then moved into place with ``os.replace``; a crash or an exception leaves either the
old target or the complete new one, plus at worst a hidden ``.<name>.partial-*`` file or folder.
Temporary files and folders are created with the process's umask (as ``open``/``mkdir`` would create the
target), never the owner-only mode of :mod:`tempfile`, so a published output is as readable as any other.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ctdenoise.errors import OutputError, OutputStorageError

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM})
"""OSError codes that mean the output file system refuses writes, whatever is written."""


def output_os_error(path: Path, exc: OSError, action: str) -> OutputError:
    """The ctdenoise error for an OSError raised while writing ``path``: OutputStorageError for a full,
    read-only or forbidden file system (STORAGE_ERRNOS), else OutputError; the message says what was being done."""
    kind = OutputStorageError if exc.errno in STORAGE_ERRNOS else OutputError
    return kind(path, f"{action}: {exc.strerror or exc}")


def _is_non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def refuse_inputs(target: Path, inputs: Iterable[Path], *, run_folder: bool = False) -> None:
    """The one rule that outputs never overwrite inputs: OutputError, before anything is written, when
    ``target`` is one of ``inputs`` (the same path after links are resolved, or the same file) or

    * an output (a file, or a series folder that publishing replaces; the default) holds an input;
    * a ``run_folder`` (a run's OUTDIR, which holds the outputs of many inputs) lies inside an input, where
      its outputs would be read back as inputs. An OUTDIR may hold inputs: each output in it is checked.
    """
    resolved = target.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if run_folder and (source == resolved or source in resolved.parents):
            raise OutputError(target, f"the output folder lies inside the input {given}; choose an OUTDIR outside the inputs")
        if source == resolved or (not run_folder and resolved in source.parents):
            raise OutputError(target, f"refusing to write over the input {source}")
        if target.exists() and source.exists() and os.path.samefile(source, target):
            raise OutputError(target, f"refusing to write over the input {source} (same file)")


def _partial_name(target: Path) -> Path:
    """A new hidden name next to ``target`` (same file system, so os.replace is atomic)."""
    return target.with_name(f".{target.name}.partial-{uuid.uuid4().hex}")


def _staging_dir(target: Path) -> Path:
    """A new hidden temporary folder next to ``target``, with the permissions ``mkdir`` gives under the umask."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = _partial_name(target)
        staging.mkdir()
        return staging
    except OSError as exc:
        raise output_os_error(target, exc, "cannot create output folder") from None


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (it survives a power cut once this returns)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_file(path: Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """Call ``write(tmp)`` to create a hidden temporary file next to ``path``, fsync it and rename it onto ``path``.

    A reader sees the old ``path`` or the complete new one, never a part; if ``write`` or the rename raises,
    the temporary file is removed, ``path`` is untouched and the error propagates (OSError as raised).
    ``durable=True`` also fsyncs the folder, so the rename itself survives a power cut.
    """
    path = Path(path)
    tmp = _partial_name(path)
    try:
        with open(tmp, "xb"):
            pass
        umask_mode = stat.S_IMODE(os.stat(tmp).st_mode)  # what the umask gives a new file
        write(tmp)
        os.chmod(tmp, umask_mode)  # some writers (safetensors' save_file) make owner-only files
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


@contextmanager
def atomic_write_dir(target: Path | str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it atomically becomes ``target``.

    ``target`` may not exist yet or be an empty folder; a non-empty one is replaced only with
    ``overwrite=True`` (OutputError otherwise, raised before anything is written). If the body
    raises, the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    if _is_non_empty_dir(target) and not overwrite:
        raise OutputError(target, "output folder exists and is not empty (pass overwrite=True to replace it)")
    if target.exists() and not target.is_dir():
        raise OutputError(target, "output path exists and is not a folder")
    staging = _staging_dir(target)
    try:
        yield staging
        _publish_dir(staging, target, overwrite=overwrite)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise output_os_error(target, exc, "cannot write output") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish_dir(staging: Path, target: Path, *, overwrite: bool) -> None:
    if _is_non_empty_dir(target):
        if not overwrite:
            raise OutputError(target, "output folder appeared while writing and is not empty")
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, retired / target.name)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
        return
    try:
        os.replace(staging, target)  # replaces a missing or empty target folder atomically
    except OSError as exc:
        raise output_os_error(target, exc, "cannot publish output folder") from None


@contextmanager
def atomic_write_files(target: Path) -> Iterator[Path]:
    """Yield a temporary folder to write ``target.name`` (and any companion files) into.

    On success every file written there is moved next to ``target`` with ``os.replace``, the
    file named like ``target`` last, so a reader never sees a header without its data file.
    """
    target = Path(target)
    staging = _staging_dir(target)
    try:
        yield staging
        written = sorted(staging.iterdir(), key=lambda p: p.name == target.name)
        if not any(p.name == target.name for p in written):
            raise OutputError(target, "the writer produced no file of that name")
        for path in written:
            os.replace(path, target.parent / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
