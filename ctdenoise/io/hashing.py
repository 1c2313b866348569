"""File fingerprints: the sha256 of a file's bytes, read in blocks (a model's tensors or an input volume
may be larger than memory wants to hold twice)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

BLOCK_BYTES = 1 << 20
"""How many bytes are read and hashed at a time."""


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def hash_file_into(digest: _Digest, path: Path | str) -> None:
    """Feed the bytes of the file ``path`` to ``digest`` (a :mod:`hashlib` object) in blocks of
    :data:`BLOCK_BYTES`; OSError when the file cannot be read."""
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            digest.update(block)


def sha256_file(path: Path | str) -> str:
    """The hex sha256 of the bytes of the file ``path``, streamed; OSError when it cannot be read."""
    digest = hashlib.sha256()
    hash_file_into(digest, path)
    return digest.hexdigest()
