"""Mutations of real CT files for the reader fuzz tests and ``scripts/fuzz_long.py`` (seeds: the files next to this module), and the oracle they share.

The oracle (:func:`check_outcome`): reading a mutated file either gives a well-formed Volume (finite HU)
or raises a ctdenoise :class:`~ctdenoise.errors.InputError` that names the file; anything else (a raw
pydicom/numpy/nibabel exception, a hang, an allocation far above the declared-size limit, NaN or infinite
HU) is a bug. Pixel data is decoded in worker processes, so the allocation bound covers what the reading
process itself holds (the headers, the HU volume), not a decoder's memory.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from ctdenoise.errors import InputError
from ctdenoise.io import Volume, find_series, read_volume

CORPUS = Path(__file__).resolve().parent
DICOM_SEEDS = tuple(sorted(CORPUS.glob("*.dcm")))
NIFTI_SEED = CORPUS / "tiny_8x8x3.nii"

FUZZ_MAX_VOXELS = 2_000_000
"""Declared-size limit used while fuzzing: every seed is far below it, absurd headers far above."""
MEMORY_LIMIT_BYTES = 64 * 2**20
"""Largest Python/numpy allocation peak one read may reach (float32 volume at the limit is 8 MB)."""
TIME_LIMIT_S = 10.0
"""Longest one read (discovery + reading) may take on a loaded 2-core machine."""

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"

# NIfTI-1 header fields (offset, struct format) that a damaged or hostile header may get wrong.
NIFTI_FIELDS = {
    "sizeof_hdr": (0, "<i"),
    "dim": (40, "<8h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern": (256, "<6f"),
    "srow": (280, "<12f"),
    "magic": (344, "<4s"),
}


def length_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of the value-length field of every top-level element of an Explicit VR Little Endian file.

    Elements of undefined length (sequences, encapsulated pixel data) are listed and skipped to the
    next sequence delimiter; the walk stops at the first element it cannot follow.
    """
    fields = []
    pos = 132 if data[128:132] == b"DICM" else 0
    while pos + 8 <= len(data):
        vr = data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            fields.append((pos + 8, 4))
            (length,) = struct.unpack_from("<I", data, pos + 8)
            value = pos + 12
        elif vr.isalpha() and vr.isupper():
            fields.append((pos + 6, 2))
            (length,) = struct.unpack_from("<H", data, pos + 6)
            value = pos + 8
        else:
            break
        if length == 0xFFFFFFFF:
            end = data.find(_SEQUENCE_DELIMITER, value)
            if end < 0:
                break
            pos = end + 8
        else:
            pos = value + length
    return fields


def truncate(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of the file."""
    return data[: int(len(data) * fraction)]


def flip_bytes(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    """Set byte ``position % len`` to ``value`` for each change."""
    out = bytearray(data)
    for position, value in changes:
        out[position % len(out)] = value
    return bytes(out)


def set_length(data: bytes, field_index: int, length: int) -> bytes:
    """Overwrite the value-length field number ``field_index`` (modulo their count) with ``length``."""
    fields = length_fields(data)
    offset, width = fields[field_index % len(fields)]
    out = bytearray(data)
    out[offset:offset + width] = (length % (1 << (8 * width))).to_bytes(width, "little")
    return bytes(out)


def set_nifti_field(data: bytes, name: str, values: tuple) -> bytes:
    """Overwrite one NIfTI-1 header field with ``values`` (as many as its format holds)."""
    offset, fmt = NIFTI_FIELDS[name]
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def set_value(ds: pydicom.Dataset, keyword: str, value) -> None:
    """Set an attribute to ``value``; a value its dictionary VR refuses is stored as text (VR LO), as damaged files have it."""
    try:
        setattr(ds, keyword, value)
    except (TypeError, ValueError, OverflowError):
        ds.add_new(pydicom.datadict.tag_for_keyword(keyword), "LO", str(value))


@dataclass(frozen=True)
class Outcome:
    """What reading one file gave: ``volume`` or ``error`` (one of them), its time and allocation peak."""

    volume: Volume | None
    error: InputError | None
    seconds: float
    peak_bytes: int


def read_measured(path: Path, max_voxels: int = FUZZ_MAX_VOXELS) -> Outcome:
    """Discover and read ``path`` as the batch runner does; only InputError is caught, anything else propagates."""
    started = time.perf_counter()
    tracemalloc.start()
    try:
        refs = find_series(path)
        volume = read_volume(refs[0], max_voxels=max_voxels)
        read_volume(path, max_voxels=max_voxels)  # the single-file path of read_volume too
        error = None
    except InputError as exc:
        volume, error = None, exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return Outcome(volume, error, time.perf_counter() - started, peak)


def check_outcome(outcome: Outcome, path: Path, max_voxels: int = FUZZ_MAX_VOXELS) -> str:
    """Assert the fuzz oracle for one read and return "read" or the error class name."""
    assert outcome.seconds < TIME_LIMIT_S, f"reading took {outcome.seconds:.1f} s"
    assert outcome.peak_bytes < MEMORY_LIMIT_BYTES, f"reading allocated {outcome.peak_bytes / 2**20:.0f} MiB"
    if outcome.error is not None:
        assert outcome.error.path is not None and str(outcome.error).startswith(str(outcome.error.path))
        assert outcome.error.path.name == path.name or outcome.error.path in path.parents
        return type(outcome.error).__name__
    volume = outcome.volume
    assert volume is not None and volume.hu.ndim == 3 and volume.hu.dtype == np.float32
    assert 0 < volume.hu.size <= max_voxels
    assert np.all(np.isfinite(volume.hu)), "the volume holds NaN or infinite HU"
    assert np.all(np.isfinite(volume.affine)) and all(np.isfinite(s) and s > 0 for s in volume.spacing)
    return "read"
