"""The output folder of a run (OUTDIR): one run at a time, no stale staging, text files written atomically.

Two runs on the same OUTDIR cannot interleave: :func:`output_lock` refuses the second while the first
holds the lock. Staging folders left by a killed run are removed (:func:`remove_stale_partials`) only
while holding it. An OUTDIR that is an input or lies inside one is refused before anything is written
(:func:`ctdenoise.io.atomic.refuse_inputs`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from ctdenoise.errors import OutputError
from ctdenoise.io.atomic import atomic_write_file, output_os_error

LOCK_FILE = ".ctdenoise.lock"
#: Names of the staging folders/files of ``atomic_write_dir`` and of this module, left behind only by a kill.
STALE_PATTERNS = (".*.partial-*", ".*.old-*")

_held_locks: set[int] = set()


def _drop_held_locks_in_child() -> None:
    """In a forked child (the io pool's workers): point the inherited descriptors of held lock files at
    /dev/null, so the child never keeps a lock alive after its owner released it (an flock belongs to the
    open file, which a fork shares)."""
    if not _held_locks:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in _held_locks:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    _held_locks.clear()


os.register_at_fork(after_in_child=_drop_held_locks_in_child)


@contextmanager
def exclusive_flock(handle: IO) -> Iterator[None]:
    """Hold an exclusive flock on the open file ``handle`` for the block, or raise BlockingIOError at once
    when another holder has it. Processes forked meanwhile do not share it (:func:`_drop_held_locks_in_child`)."""
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held_locks.add(handle.fileno())
    try:
        yield
    finally:
        _held_locks.discard(handle.fileno())


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` or raise :class:`OutputError` if another run holds it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(out_dir / LOCK_FILE, "a+")
    except OSError as exc:
        raise output_os_error(out_dir, exc, "cannot create the output folder's lock file") from None
    with handle, ExitStack() as held:
        try:
            held.enter_context(exclusive_flock(handle))
        except BlockingIOError:
            raise OutputError(out_dir, "another ctdenoise run is writing to this folder; wait for it or use another -o") from None
        yield


def remove_stale_partials(out_dir: Path) -> None:
    """Delete staging folders and files left by a run that was killed (only called while holding the lock)."""
    for pattern in STALE_PATTERNS:
        for leftover in out_dir.glob(f"**/{pattern}"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and fsynced (:func:`ctdenoise.io.atomic.atomic_write_file`);
    an OSError becomes the OutputError that names ``path``."""
    try:
        atomic_write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise output_os_error(path, exc, "cannot write") from None


def check_inside(target: Path, out_dir: Path) -> None:
    """OutputError when ``target`` resolves outside ``out_dir`` (e.g. through a symlink planted inside OUTDIR)."""
    if not target.resolve().is_relative_to(out_dir.resolve()):
        raise OutputError(target, f"resolves outside the output folder {out_dir}; refusing to write there")


def remove_empty_parents(out_dir: Path, key: str) -> None:
    """Remove the folders between ``out_dir`` and the output of ``key`` that are empty (made for a series
    that was stopped or failed before it was published)."""
    folder = (out_dir / key).parent
    while folder != out_dir and folder.is_relative_to(out_dir):
        try:
            folder.rmdir()
        except OSError:  # not empty (other series live there) or already gone
            return
        folder = folder.parent
