"""Fuzzing the readers: mutated real CT files end in a correct read or a documented InputError.

Seeds are the real files in ``tests/fuzz_corpus`` (CT_small, its RLE copy, a 16x16 CT slice, a
512x512 JPEG 2000 slice, a cropped 2-frame Enhanced CT, a tiny NIfTI). Each hypothesis case
mutates one seed (truncation, byte flips, element value lengths, pixel-module attributes,
NIfTI header fields) and reads it as the batch runner does (find_series, then read_volume),
under a time and an allocation bound (see ``fuzz_corpus/mutations.py``). The CI run is
derandomised; ``scripts/fuzz_long.py`` runs the same targets much longer with random seeds.
"""

from __future__ import annotations

import copy
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import JPEG2000Lossless, RLELossless

from ctdenoise.errors import ImageTooLargeError, InputError, PixelDataError
from ctdenoise.io import read_volume
from fuzz_corpus.mutations import (
    DICOM_SEEDS,
    FUZZ_MAX_VOXELS,
    NIFTI_FIELDS,
    NIFTI_SEED,
    check_outcome,
    flip_bytes,
    read_measured,
    set_length,
    set_nifti_field,
    set_value,
    truncate,
)

pytestmark = pytest.mark.filterwarnings("ignore")  # pydicom and nibabel warn about every damaged value

FUZZ_SETTINGS = settings(
    max_examples=120,
    deadline=None,  # the per-read time bound is asserted by check_outcome; a wall deadline flakes on shared CPUs
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

seeds = st.sampled_from(DICOM_SEEDS)


def write_and_check(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return check_outcome(read_measured(path), path)


@FUZZ_SETTINGS
@given(seed=seeds, fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_dicom_reads_or_is_refused(tmp_path, seed, fraction):
    write_and_check(tmp_path, "case.dcm", truncate(seed.read_bytes(), fraction))


@FUZZ_SETTINGS
@given(seed=seeds, changes=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=24))
def test_dicom_with_flipped_bytes_reads_or_is_refused(tmp_path, seed, changes):
    write_and_check(tmp_path, "case.dcm", flip_bytes(seed.read_bytes(), changes))


interesting_lengths = st.one_of(
    st.sampled_from([0, 1, 2, 3, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 2**31]), st.integers(0, 2**32 - 1)
)


@FUZZ_SETTINGS
@given(seed=seeds, field_index=st.integers(0, 10_000), length=interesting_lengths)
def test_dicom_with_a_wrong_element_length_reads_or_is_refused(tmp_path, seed, field_index, length):
    write_and_check(tmp_path, "case.dcm", set_length(seed.read_bytes(), field_index, length))


PIXEL_MODULE_VALUES = {
    "Rows": st.integers(0, 65535),
    "Columns": st.integers(0, 65535),
    "NumberOfFrames": st.one_of(st.integers(-5, 2**31 - 1).map(str), st.sampled_from(["", "abc", "1.5", "1e9"])),
    "BitsAllocated": st.sampled_from([0, 1, 7, 8, 12, 16, 24, 32, 64, 255]),
    "BitsStored": st.integers(0, 255),
    "HighBit": st.integers(0, 255),
    "PixelRepresentation": st.integers(0, 3),
    "SamplesPerPixel": st.integers(0, 4),
    "RescaleSlope": st.sampled_from(["0", "1", "-1", "1e308", "nan", "inf", "x"]),
    "RescaleIntercept": st.sampled_from(["-1024", "nan", "-inf", "1e308", "y"]),
    "PixelPaddingValue": st.integers(-32768, 32767),
}
REMOVABLE = ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation",
             "RescaleSlope", "ImagePositionPatient", "PixelSpacing", "TransferSyntaxUID")
header_edits = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(sorted(PIXEL_MODULE_VALUES))).flatmap(
            lambda edit: st.tuples(st.just(edit[0]), st.just(edit[1]), PIXEL_MODULE_VALUES[edit[1]])
        ),
        st.tuples(st.just("delete"), st.sampled_from(REMOVABLE), st.none()),
        st.tuples(st.just("pixel_bytes"), st.just("PixelData"), st.integers(-20000, 20000)),
        st.tuples(st.just("syntax"), st.just("TransferSyntaxUID"),
                  st.sampled_from([RLELossless, JPEG2000Lossless, pydicom.uid.ImplicitVRLittleEndian,
                                   pydicom.uid.ExplicitVRBigEndian, "1.2.3.4"])),
    ),
    min_size=1,
    max_size=4,
)


def edit_header(ds: pydicom.Dataset, edits) -> pydicom.Dataset:
    ds = copy.deepcopy(ds)
    for action, keyword, value in edits:
        if action == "set":
            set_value(ds, keyword, value)
        elif action == "delete":
            holder = ds.file_meta if keyword == "TransferSyntaxUID" else ds
            if keyword in holder:
                delattr(holder, keyword)
        elif action == "pixel_bytes" and "PixelData" in ds:
            ds.PixelData = ds.PixelData[:value] if value < 0 else ds.PixelData + bytes(value)
        elif action == "syntax":
            ds.file_meta.TransferSyntaxUID = value
    return ds


@FUZZ_SETTINGS
@given(seed=seeds, edits=header_edits)
def test_dicom_with_absurd_pixel_module_reads_or_is_refused(tmp_path, seed, edits):
    ds = edit_header(pydicom.dcmread(seed), edits)
    path = tmp_path / "case.dcm"
    try:
        ds.save_as(path)  # keeps the encoding the (possibly edited) file meta declares
    except Exception:  # noqa: BLE001 - pydicom refuses to write some combinations; nothing to read then
        return
    check_outcome(read_measured(path), path)


nifti_values = {
    "sizeof_hdr": st.tuples(st.integers(-(2**31), 2**31 - 1)),
    "dim": st.tuples(*[st.integers(-(2**15), 2**15 - 1)] * 8),
    "datatype": st.tuples(st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 9999])),
    "bitpix": st.tuples(st.integers(-(2**15), 2**15 - 1)),
    "pixdim": st.tuples(*[st.floats(width=32, allow_nan=True, allow_infinity=True)] * 8),
    "vox_offset": st.tuples(st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "scl_slope": st.tuples(st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "scl_inter": st.tuples(st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "qform_code": st.tuples(st.integers(-(2**15), 2**15 - 1)),
    "sform_code": st.tuples(st.integers(-(2**15), 2**15 - 1)),
    "quatern": st.tuples(*[st.floats(width=32, allow_nan=True, allow_infinity=True)] * 6),
    "srow": st.tuples(*[st.floats(width=32, allow_nan=True, allow_infinity=True)] * 12),
    "magic": st.sampled_from([(b"n+1\0",), (b"ni1\0",), (b"n+2\0",), (b"xxxx",)]),
}
nifti_edits = st.lists(
    st.sampled_from(sorted(NIFTI_FIELDS)).flatmap(lambda name: st.tuples(st.just(name), nifti_values[name])),
    min_size=1,
    max_size=3,
)


@FUZZ_SETTINGS
@given(edits=nifti_edits, fraction=st.one_of(st.just(1.0), st.floats(0.0, 1.0)))
def test_nifti_with_damaged_header_reads_or_is_refused(tmp_path, edits, fraction):
    data = NIFTI_SEED.read_bytes()
    for name, values in edits:
        data = set_nifti_field(data, name, values)
    write_and_check(tmp_path, "case.nii", truncate(data, fraction) if fraction < 1.0 else data)


# Decompression bombs: the declared size is refused before any pixel data is decoded or allocated.


def declare_size(seed: Path, rows: int, columns: int, frames: int, tmp_path: Path) -> Path:
    ds = pydicom.dcmread(seed)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, str(frames)
    path = tmp_path / f"bomb-{seed.name}"
    ds.save_as(path)
    return path


@pytest.mark.parametrize("seed", DICOM_SEEDS, ids=lambda p: p.stem)
def test_declared_size_over_the_limit_is_refused_before_decoding(seed, tmp_path, monkeypatch):
    path = declare_size(seed, 65535, 65535, 2**31 - 1, tmp_path)  # 9.2e18 voxels declared
    decoded = []
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(lambda ds: decoded.append(ds) or np.zeros(1)))
    outcome = read_measured(path, max_voxels=FUZZ_MAX_VOXELS)
    assert isinstance(outcome.error, ImageTooLargeError) and not decoded
    assert "more than the limit" in str(outcome.error) and str(path) in str(outcome.error)
    assert outcome.peak_bytes < 2**20


def test_default_limit_refuses_a_bomb_that_declares_terabytes(tmp_path):
    path = declare_size(DICOM_SEEDS[0], 65535, 65535, 100_000, tmp_path)
    with pytest.raises(ImageTooLargeError, match="max_voxels"):
        read_volume(path)


def test_the_limit_is_configurable(tmp_path):
    seed = next(p for p in DICOM_SEEDS if p.name == "ct_small.dcm")
    assert read_volume(seed, max_voxels=128 * 128).hu.shape == (1, 128, 128)
    with pytest.raises(ImageTooLargeError):
        read_volume(seed, max_voxels=128 * 128 - 1)


def test_nifti_declaring_a_huge_volume_is_refused_before_reading_voxels(tmp_path):
    data = set_nifti_field(NIFTI_SEED.read_bytes(), "dim", (3, 32767, 32767, 32767, 1, 1, 1, 1))
    path = tmp_path / "bomb.nii"
    path.write_bytes(data)
    outcome = read_measured(path)
    assert isinstance(outcome.error, ImageTooLargeError) and outcome.peak_bytes < 2**20


def test_missing_pixel_data_is_a_pixel_data_error(tmp_path):
    ds = pydicom.dcmread(DICOM_SEEDS[0])
    del ds.PixelData
    path = tmp_path / "no_pixels.dcm"
    ds.save_as(path)
    with pytest.raises(PixelDataError, match="no Pixel Data"):
        read_volume(path)


@pytest.mark.parametrize("seed", [*DICOM_SEEDS, NIFTI_SEED], ids=lambda p: p.name)
def test_every_seed_reads_unchanged(seed):
    assert check_outcome(read_measured(seed), seed) == "read"


def test_a_meta_less_dicom_file_reads_like_its_source(tmp_path):
    """Files without file meta (old archives) are parsed by guessing the encoding; the guess is kept for decoding."""
    seed = next(p for p in DICOM_SEEDS if p.name == "ct_small.dcm")
    ds = pydicom.dcmread(seed)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    path = tmp_path / "no_meta.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    np.testing.assert_array_equal(read_volume(path).hu, read_volume(seed).hu)


@pytest.mark.parametrize("bad_text", [b"x", b"\x0b"], ids=["letter", "control"])
def test_a_position_that_is_no_number_is_an_input_error_naming_file_and_attribute(bad_text, tmp_path):
    seed = next(p for p in DICOM_SEEDS if p.name == "ct_small.dcm")
    position = pydicom.dcmread(seed).ImagePositionPatient
    text = "\\".join(str(v) for v in position).encode()
    data = seed.read_bytes()
    at = data.index(text) + 2  # inside the first number, past its sign and first digit
    path = tmp_path / "bad_position.dcm"
    path.write_bytes(data[:at] + bad_text + data[at + 1:])
    with pytest.raises(InputError) as raised:
        read_volume(path)
    assert raised.value.path == path and "ImagePositionPatient" in str(raised.value)


def test_nifti_header_field_offsets_match_nibabel():
    """The fuzzer edits the fields it thinks it edits."""
    import nibabel as nib

    with NIFTI_SEED.open("rb") as handle:
        header = nib.Nifti1Header.from_fileobj(handle)
    data = NIFTI_SEED.read_bytes()
    assert struct.unpack_from("<8h", data, NIFTI_FIELDS["dim"][0]) == tuple(int(v) for v in header["dim"])
    assert struct.unpack_from("<f", data, NIFTI_FIELDS["scl_inter"][0])[0] == float(header["scl_inter"])


def test_a_decoder_panic_on_corrupt_rle_data_is_a_pixel_data_error(tmp_path):
    """pylibjpeg-rle panics (pyo3 PanicException, not an Exception) on this one-byte change; found by the fuzzer."""
    seed = next(p for p in DICOM_SEEDS if p.name == "ct_small_rle.dcm")
    path = tmp_path / "rle_panic.dcm"
    path.write_bytes(flip_bytes(seed.read_bytes(), [(7549, 214)]))
    with pytest.raises(PixelDataError, match="cannot decode pixel data .RLE Lossless.: PanicException"):
        read_volume(path)
