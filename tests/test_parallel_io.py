"""Parallel DICOM I/O (:mod:`ctdenoise.io.pool`): the same volume, files, errors and warnings as the serial path."""

from __future__ import annotations

import operator
import os
import signal
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from ctdenoise.errors import PixelDataError
from ctdenoise.io import DicomOutput, dicom_write, read_volume, write_derived_dicom
from ctdenoise.io.pool import available_cores, map_files, resolve_workers
from ctdenoise.io.read_warnings import collect_warnings, route_warnings

SLICES = 8
FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def derived_uid(source_uid: str) -> str:
    """Deterministic derived UIDs, so that two writes of one derivation are byte-identical."""
    return generate_uid(entropy_srcs=["test_parallel_io", source_uid])


@pytest.fixture
def series(build_series) -> Path:
    # File names in reverse slice order: the read must sort, and the parallel read must sort the same way.
    return build_series([float(k) for k in range(SLICES)][::-1], name="series")


def test_resolve_workers_sizes_from_the_cores_and_refuses_nonsense():
    assert resolve_workers(None) == available_cores() >= 1
    assert resolve_workers(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers"):
            resolve_workers(bad)


def test_map_files_keeps_the_order_and_never_holds_more_than_the_bound():
    pulled = 0
    worst = 0
    consumed = 0

    def items():
        nonlocal pulled, worst
        for k in range(40):
            pulled += 1
            worst = max(worst, pulled - consumed)
            yield k

    results = []
    for value in map_files(operator.neg, items(), count=40, workers=2, in_flight=3):
        results.append(value)
        consumed += 1
    assert results == [-k for k in range(40)]
    assert worst == 3  # reached (the bound is used) and never exceeded


def test_workers_leave_ctrl_c_to_the_parent_and_die_on_sigterm():
    handlers = list(map_files(signal.getsignal, [signal.SIGINT, signal.SIGTERM], count=2, workers=2))
    assert handlers == [signal.SIG_IGN, signal.SIG_DFL]


def test_parallel_read_gives_the_serial_volume(series):
    serial = read_volume(series, workers=1)
    parallel = read_volume(series, workers=3)
    assert np.array_equal(serial.hu, parallel.hu)
    assert np.array_equal(serial.affine, parallel.affine) and serial.spacing == parallel.spacing
    assert serial.padding_mask is not None and serial.padding_mask.any()  # 693_UNCR.dcm has padding
    assert np.array_equal(serial.padding_mask, parallel.padding_mask)
    assert [ds.filename for ds in serial.dicom_datasets] == [ds.filename for ds in parallel.dicom_datasets]
    assert serial.dicom_datasets == parallel.dicom_datasets and "PixelData" not in parallel.dicom_datasets[0]


@pytest.mark.parametrize("compression", ["none", "jpeg-ls"])
def test_parallel_write_gives_byte_identical_files(series, tmp_path, monkeypatch, compression):
    monkeypatch.setattr(dicom_write, "derivation_time", lambda source: FIXED_TIME)
    volume = read_volume(series, workers=1)
    hu = volume.hu + np.float32(5.0)
    outputs = {}
    for workers in (1, 2):
        output = DicomOutput("test", "test", derived_uid=derived_uid, compression=compression, workers=workers)
        outputs[workers] = write_derived_dicom(volume, hu, tmp_path / f"out{workers}", output)
    assert [p.name for p in outputs[1]] == [p.name for p in outputs[2]]
    for one, two in zip(outputs[1], outputs[2]):
        assert one.read_bytes() == two.read_bytes(), one.name
    assert str(pydicom.dcmread(outputs[2][0]).file_meta.TransferSyntaxUID) == dicom_write.COMPRESSION_SYNTAXES[compression]


def test_parallel_read_of_a_compressed_series_gives_the_serial_volume(series, tmp_path):
    volume = read_volume(series, workers=1)
    written = write_derived_dicom(volume, volume.hu, tmp_path / "rle", DicomOutput("test", "test", compression="rle", workers=1))
    assert np.array_equal(read_volume(written[0].parent, workers=1).hu, read_volume(written[0].parent, workers=2).hu)


@pytest.mark.parametrize("workers", [1, 2])
def test_write_hands_each_slice_on_as_soon_as_it_is_ready(series, tmp_path, workers):
    """Slice k is read only after slice_ready(k) and is being written before slice_ready(k + 1) returns."""
    volume = read_volume(series, workers=1)
    hu = np.full(volume.hu.shape, np.nan, dtype=np.float32)  # NaN until "computed"
    asked, streamed = [], []

    def slice_ready(k: int) -> None:
        asked.append(k)
        if k > 0:  # the file of slice k - 1 (IM0000k.dcm) appears in the staging folder while we wait here
            deadline = time.monotonic() + 20
            while not list(tmp_path.glob(f".out.partial-*/IM{k:05d}.dcm")) and time.monotonic() < deadline:
                time.sleep(0.01)
            streamed.append(bool(list(tmp_path.glob(f".out.partial-*/IM{k:05d}.dcm"))))
        hu[k] = volume.hu[k]  # computed only now: a slice read before this would be NaN

    written = write_derived_dicom(volume, hu, tmp_path / "out", DicomOutput("t", "t", workers=workers), slice_ready=slice_ready)
    assert asked == list(range(SLICES)) and all(streamed) and len(streamed) == SLICES - 1
    assert np.array_equal(read_volume(written[0].parent, workers=1).hu, volume.hu)


def corrupt_slice(series: Path, index: int) -> Path:
    """Truncate the pixel data of one file (its header stays readable): the error comes from the pixel pass."""
    path = sorted(series.iterdir())[index]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    return path


def test_a_corrupt_file_gives_the_serial_error_naming_it(series):
    bad = corrupt_slice(series, 5)
    errors = []
    for workers in (1, 3):
        with pytest.raises(PixelDataError) as caught:
            read_volume(series, workers=workers)
        errors.append(caught.value)
    assert type(errors[0]) is type(errors[1]) and str(errors[0]) == str(errors[1])
    assert errors[1].path == bad and str(bad) in str(errors[1]) and "truncated" in errors[1].problem


def test_of_two_bad_files_the_first_in_slice_order_is_reported_as_serially(series):
    files = sorted(series.iterdir())  # names run against the slice order: slice006 is read before slice002
    corrupt_slice(series, 2)
    corrupt_slice(series, 6)
    messages = set()
    for workers in (1, 2):
        with pytest.raises(PixelDataError) as caught:
            read_volume(series, workers=workers)
        messages.add(str(caught.value))
    assert len(messages) == 1 and messages.pop().startswith(f"{files[6]}:")


def test_warnings_raised_in_workers_reach_the_reading_thread_as_serially(series):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(series.iterdir())[:3]:  # SH holds 16 characters: pydicom warns on every read
            ds = pydicom.dcmread(path)
            ds.StationName = "STATION" * 6
            ds.save_as(path)
    collected = {}
    with route_warnings():
        for workers in (1, 2):
            with collect_warnings() as raised:
                volume = read_volume(series, workers=workers)
            collected[workers] = raised
    assert volume.hu.shape[0] == SLICES
    assert len(collected[1]) >= 3 and all("exceeds the maximum length of 16" in m for m in collected[1])
    assert collected[1] == collected[2]


def test_a_reused_pool_reads_relative_paths_from_the_callers_working_directory(tmp_path, monkeypatch) -> None:
    from ctdenoise.examples import write_example_series

    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        write_example_series(folder / "example_ct")
    monkeypatch.chdir(first)
    before = read_volume(Path("example_ct"), workers=2)  # starts (or reuses) the pool while in ``a``
    (first / "example_ct" / "slice000.dcm").unlink()  # ``a`` no longer has a readable series
    monkeypatch.chdir(second)
    after = read_volume(Path("example_ct"), workers=2)
    assert after.hu.shape == before.hu.shape


def test_workers_end_when_their_parent_is_killed(tmp_path) -> None:
    import subprocess

    script = (
        "import multiprocessing, operator, sys, time\n"
        "from ctdenoise.io.pool import map_files\n"
        "list(map_files(operator.neg, range(8), count=8, workers=2))\n"
        "print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
    finally:
        parent.kill()
        parent.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)]
