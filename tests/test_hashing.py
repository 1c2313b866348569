"""sha256_file: the streamed sha256 every file fingerprint of ctdenoise uses."""

from __future__ import annotations

import hashlib

import pytest

from ctdenoise.io.hashing import BLOCK_BYTES, hash_file_into, sha256_file


@pytest.mark.parametrize("size", [0, 1, BLOCK_BYTES, 2 * BLOCK_BYTES + 7])
def test_sha256_file_equals_the_sha256_of_the_whole_content(tmp_path, size):
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_hash_file_into_continues_a_digest_across_files(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"left" * 1000)
    second.write_bytes(b"right")
    digest = hashlib.sha256()
    hash_file_into(digest, first)
    hash_file_into(digest, second)
    assert digest.hexdigest() == hashlib.sha256(b"left" * 1000 + b"right").hexdigest()


def test_sha256_file_of_a_missing_file_raises_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        sha256_file(tmp_path / "missing.bin")
