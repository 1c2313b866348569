"""Hostile and odd input found in issue 27: each test failed before its fix.

* a file whose decoder aborts the process (GDCM on a JPEG 2000 file that claims YBR_FULL) costs one series
  a PixelDataError, not the process: decoding runs in worker processes that are replaced when they die;
* multi-valued person names (``SMITH^JOHN\\DOE^ANNA``) travel between the I/O worker processes;
* rescale values and NIfTI scaling that give infinite or NaN HU are refused, so are Transfer Syntax UIDs of
  the wrong VR, and quoted values in error messages are cut short;
* slices that are not evenly spaced are refused for the formats with one slice step, naming the steps;
* a .zip archive inside a folder input is opened, and skipped files are named on the console.

The crafted files are built from pydicom's real ``CT_small.dcm``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless

from ctdenoise.cli import EXIT_OK, EXIT_PARTIAL, main
from ctdenoise.errors import MAX_PROBLEM_CHARS, InputError, NotDicomError, OutputError, PixelDataError
from ctdenoise.io import DicomOutput, read_volume, write_derived_dicom, write_volume
from ctdenoise.io.pool import map_files

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CT_SMALL = "CT_small.dcm"


def denoise(*args: str | Path) -> int:
    return main(["denoise", *map(str, args), "--device", "cpu"])


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


# 1. A decoder that aborts the process


def write_decoder_bomb(folder: Path) -> Path:
    """CT_small recompressed to JPEG 2000 Lossless, then labelled YBR_FULL: GDCM's decoder throws a C++
    exception nobody catches, and the process aborts (SIGABRT)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(get_testdata_file(CT_SMALL))
    ds.compress(JPEG2000Lossless)
    ds.PhotometricInterpretation = "YBR_FULL"
    path = folder / "ybr_j2k.dcm"
    ds.save_as(path)
    return path


def abort_on_three(item: int) -> int:
    """A deterministic crash: item 3 aborts the process that runs it (as a native decoder does)."""
    if item == 3:
        os.abort()
    return -item


def crash_report(item: int, how: str) -> InputError:
    return PixelDataError(f"item{item}.dcm", f"crashed ({how})")


@pytest.mark.parametrize("workers", [1, 2])
def test_an_aborting_item_raises_its_own_error_and_the_others_are_computed(workers):
    got = []
    with pytest.raises(PixelDataError) as raised:
        for value in map_files(abort_on_three, range(6), count=6, workers=workers, crash_error=crash_report):
            got.append(value)
    assert got == [0, -1, -2]  # the items before it, in order
    assert raised.value.path == Path("item3.dcm") and "signal SIGABRT" in str(raised.value)
    # the pool that lost a worker is replaced: the next call works, a single item is isolated too
    assert list(map_files(abort_on_three, [4, 5], count=2, workers=workers, crash_error=crash_report)) == [-4, -5]
    with pytest.raises(PixelDataError, match="signal SIGABRT"):
        list(map_files(abort_on_three, [3], count=1, workers=workers, crash_error=crash_report))


def slow_negative(item: int) -> int:
    time.sleep(1.5)
    return -item


def test_a_crash_in_one_call_does_not_fail_another_call_sharing_the_pool():
    """A batch encodes series k (not isolated) while the next series is decoded with the same pool: a decoder
    that kills a worker there breaks the pool under the encoder's items too; they are run again, not failed."""
    encoding = map_files(slow_negative, range(3), count=3, workers=2)
    assert next(encoding) == 0  # items 0 and 1 ran side by side; item 2 runs now, the other worker is free
    with pytest.raises(PixelDataError, match="signal SIGABRT"):
        list(map_files(abort_on_three, [3], count=1, workers=2, crash_error=crash_report))  # dies beside item 2
    assert list(encoding) == [-1, -2]


def test_reading_a_file_that_aborts_its_decoder_is_a_pixel_data_error(build_series, tmp_path):
    """Run in a child Python: before the fix the read aborted the process that read it."""
    good = build_series([0.0, 2.5], name="good", source=CT_SMALL)
    bomb = write_decoder_bomb(tmp_path / "bomb")
    script = (
        "import sys\n"
        "from ctdenoise.errors import PixelDataError\n"
        "from ctdenoise.io import read_volume\n"
        "for workers in (1, 2):\n"
        "    try:\n"
        "        read_volume(sys.argv[1], workers=workers)\n"
        "    except PixelDataError as error:\n"
        "        print('refused:', error)\n"
        "    print('good:', read_volume(sys.argv[2], workers=workers).hu.shape)\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(bomb), str(good)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["refused", "good"] * 2
    assert all(line.startswith(f"refused: {bomb}: ") for line in lines[::2])
    assert "the pixel decoder crashed (signal SIGABRT)" in lines[0]
    assert lines[1] == "good: (2, 128, 128)"


def test_a_batch_with_a_decoder_bomb_finishes_the_other_series_and_writes_its_report(build_series, tiny_checkpoint,
                                                                                       tmp_path):
    """Before the fix ``ctdenoise denoise`` (and this test's process with it) ended with SIGABRT, exit status 134,
    no report.json and no other series done."""
    build_series([0.0, 2.5, 5.0], name="tree/a_good", source=CT_SMALL)
    write_decoder_bomb(tmp_path / "tree" / "b_bomb")
    build_series([0.0, 2.5], name="tree/c_good", source=CT_SMALL)
    out = tmp_path / "out"
    assert denoise(tmp_path / "tree", "-o", out, "--model", tiny_checkpoint) == EXIT_PARTIAL
    statuses = {s["key"].split("/")[0]: (s["status"], s.get("error") or "") for s in report_of(out)["series"]}
    assert statuses["a_good"][0] == statuses["c_good"][0] == "done"
    assert statuses["b_bomb"][0] == "failed" and "decoder crashed (signal SIGABRT)" in statuses["b_bomb"][1]


def send_compressed(port: int, files: list[Path]) -> list[int]:
    """C-STORE ``files`` in their own (compressed) transfer syntax."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CTImageStorage, sorted({str(pydicom.dcmread(p).file_meta.TransferSyntaxUID)
                                                     for p in files}))
    assoc = ae.associate("127.0.0.1", port, ae_title="CTDENOISE")
    try:
        assert assoc.is_established
        return [assoc.send_c_store(pydicom.dcmread(path)).Status for path in files]
    finally:
        assoc.release()


def test_the_node_moves_a_decoder_bomb_to_failed_and_keeps_serving(build_series, tiny_model, tmp_path):
    """Before the fix the node aborted 3 s after the bomb's series closed, and at every restart."""
    from ctdenoise.serve.senders import FolderDestination
    from test_serve import done_records, running_node, send, wait_for

    bomb = write_decoder_bomb(tmp_path / "bomb")
    during = sorted(build_series([0.0, 5.0], name="during", source=CT_SMALL).iterdir())
    after = sorted(build_series([0.0, 5.0, 10.0], name="after", source=CT_SMALL).iterdir())
    spool_dir, out = tmp_path / "spool", tmp_path / "out"
    with running_node(spool_dir, tiny_model, [FolderDestination(out)], series_timeout=0.3) as port:
        assert send_compressed(port, [bomb]) == [0]
        assert send(port, during) == [0, 0]  # received while the bomb's series waits or is derived
        wait_for(lambda: list((spool_dir / "failed").glob("*")), what="the bomb's series in failed/")
        wait_for(lambda: len(done_records(spool_dir)) == 1, what="the series sent during it to be delivered")
        assert send(port, after) == [0, 0, 0]
        wait_for(lambda: len(done_records(spool_dir)) == 2, what="the series sent after it to be delivered")
    assert len(list(out.rglob("*.dcm"))) == 5
    failed = [p for p in (spool_dir / "failed").iterdir() if p.is_dir()]
    assert len(failed) == 1 and not list((spool_dir / "series").iterdir())
    assert "decoder crashed" in json.dumps([p.read_text() for p in failed[0].rglob("*.json")])


# 2. Multi-valued person names


def test_multi_valued_person_names_read_and_write_with_worker_processes(build_series, tmp_path):
    series = build_series([0.0, 2.5, 5.0], name="names", source=CT_SMALL)
    for path in sorted(series.iterdir()):
        ds = pydicom.dcmread(path)
        ds.OperatorsName = "SMITH^JOHN\\DOE^ANNA"
        item = pydicom.Dataset()
        item.PerformingPhysicianName = "ROE^RICHARD\\POE^EDGAR"
        ds.PerformedProtocolCodeSequence = [item]  # in a sequence too
        ds.save_as(path)
    serial, parallel = read_volume(series, workers=1), read_volume(series, workers=2)
    assert np.array_equal(serial.hu, parallel.hu)
    assert [str(v) for v in parallel.dicom_datasets[0].OperatorsName] == ["SMITH^JOHN", "DOE^ANNA"]
    written = write_derived_dicom(parallel, parallel.hu, tmp_path / "out", DicomOutput("t", "t", workers=2))
    again = pydicom.dcmread(written[0])
    assert [str(v) for v in again.OperatorsName] == ["SMITH^JOHN", "DOE^ANNA"]
    assert [str(v) for v in again.PerformedProtocolCodeSequence[0].PerformingPhysicianName] == ["ROE^RICHARD",
                                                                                                  "POE^EDGAR"]


# 6. Infinite or NaN HU, wrong-VR transfer syntax, long quoted values


@pytest.mark.parametrize(("keyword", "value"), [("RescaleSlope", "-1e308"), ("RescaleIntercept", "1e308"),
                                                 ("RescaleSlope", "1e300")])
def test_a_rescale_that_gives_infinite_hu_is_refused(ct_small, tmp_path, keyword, value):
    ds = pydicom.dcmread(ct_small)
    setattr(ds, keyword, value)
    path = tmp_path / "rescale.dcm"
    ds.save_as(path)
    for workers in (1, 2):
        with pytest.raises(PixelDataError, match="not finite") as raised:
            read_volume(path, workers=workers)
        assert raised.value.path == path and "RescaleSlope" in raised.value.problem


def write_nifti(path: Path, data: np.ndarray, scaling: tuple[float, float] | None = None) -> Path:
    """``data`` as NIfTI; ``scaling``: (scl_slope, scl_inter) written into the header bytes as given."""
    nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.7, 2.5, 1.0])), path)
    if scaling is not None:
        raw = bytearray(path.read_bytes())
        raw[112:120] = np.asarray(scaling, dtype="<f4").tobytes()
        path.write_bytes(bytes(raw))
    return path


def test_a_nifti_scaling_beyond_float32_or_nan_voxels_are_refused(tmp_path):
    ints = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    path = write_nifti(tmp_path / "huge_scale.nii", ints, scaling=(1e38, 3e38))
    with pytest.raises(InputError, match="voxels are not finite numbers") as raised:
        read_volume(path)
    assert raised.value.path == path and "scl_slope 1e+38" in raised.value.problem
    floats = np.zeros((4, 5, 3), dtype=np.float32)
    floats[1, 2, 0] = np.nan
    path = write_nifti(tmp_path / "nan.nii.gz", floats)
    with pytest.raises(InputError, match="1 voxels are not finite"):
        read_volume(path)


def with_transfer_syntax_vr(source: Path, vr: bytes, target: Path) -> Path:
    """``source`` with its (0002,0010) Transfer Syntax UID element given another (short-form) VR, bytes unchanged."""
    data = source.read_bytes()
    at = data.index(b"\x02\x00\x10\x00UI")
    target.write_bytes(data[: at + 4] + vr + data[at + 6:])
    return target


def test_a_transfer_syntax_uid_with_the_wrong_vr_reads_as_text_or_is_refused(ct_small, tmp_path):
    as_text = with_transfer_syntax_vr(ct_small, b"SH", tmp_path / "sh.dcm")
    np.testing.assert_array_equal(read_volume(as_text).hu, read_volume(ct_small).hu)
    as_numbers = with_transfer_syntax_vr(ct_small, b"US", tmp_path / "us.dcm")
    with pytest.raises(NotDicomError, match=r"\(0002,0010\) Transfer Syntax UID is not a UID \(VR US"):
        read_volume(as_numbers)


def test_error_messages_cut_long_quoted_values(ct_small, tmp_path):
    ds = pydicom.dcmread(ct_small)
    ds.add_new(pydicom.datadict.tag_for_keyword("RescaleSlope"), "UT", "x" * 60_000)
    path = tmp_path / "long_value.dcm"
    ds.save_as(path)
    with pytest.raises(PixelDataError) as raised:
        read_volume(path)
    assert "RescaleSlope is not a number ('xxxx" in str(raised.value)
    assert len(raised.value.problem) < 200 and "(60,002 characters)" in raised.value.problem
    assert len(str(InputError(path, "y" * 50_000))) <= len(str(path)) + 2 + MAX_PROBLEM_CHARS + 40


# 7. Slices that are not evenly spaced


def test_unevenly_spaced_slices_are_refused_for_single_step_formats_and_kept_in_dicom(build_series, tmp_path):
    series = build_series([0.0, 2.5, 9.0], name="uneven", source=CT_SMALL)
    volume = read_volume(series)
    for fmt in ("nifti", "nrrd", "mha"):
        with pytest.raises(OutputError) as raised:
            write_volume(volume, volume.hu, tmp_path / f"uneven_{fmt}", format=fmt)
        problem = raised.value.problem
        assert "not evenly spaced" in problem and "2.500 mm between slices 1 and 2" in problem
        assert "6.500 mm between slices 2 and 3" in problem and "slice 2 would lie 2.000 mm" in problem
    assert not list(tmp_path.glob("uneven_*")) and not list(tmp_path.glob(".uneven*"))
    written = write_volume(volume, volume.hu, tmp_path / "dicom", format="dicom", dicom=DicomOutput("t", "t"))
    positions = sorted(float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in written)
    sources = sorted(float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in series.iterdir())
    assert positions == sources


def test_evenly_spaced_slices_with_rounding_in_their_positions_still_write_nifti(build_series, tmp_path):
    volume = read_volume(build_series([0.0, 2.501, 4.999, 7.5], name="even", source=CT_SMALL))
    (written,) = write_volume(volume, volume.hu, tmp_path / "even", format="nifti")
    assert read_volume(written).hu.shape == volume.hu.shape


# 12. A .zip archive inside a folder, skipped files on the console


def test_a_zip_inside_a_folder_is_opened_and_skipped_files_are_logged(build_series, tiny_checkpoint, tmp_path,
                                                                        caplog):
    build_series([0.0, 2.5], name="tree/plain", source=CT_SMALL)
    zipped = build_series([0.0, 2.5, 5.0], name="to_zip/ct", source=CT_SMALL)
    (tmp_path / "tree" / "sub").mkdir()
    with zipfile.ZipFile(tmp_path / "tree" / "sub" / "study.zip", "w") as handle:
        for path in sorted(zipped.iterdir()):
            handle.write(path, f"ct/{path.name}")
    (tmp_path / "tree" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert denoise(tmp_path / "tree", "-o", out, "--model", tiny_checkpoint) == EXIT_OK
    series = {s["key"].split("/series")[0]: s for s in report_of(out)["series"]}
    assert set(series) == {"plain", "sub/study/ct"}
    assert series["sub/study/ct"]["slices"] == 3 and series["sub/study/ct"]["status"] == "done"
    assert series["sub/study/ct"]["input"] == f"{tmp_path / 'tree' / 'sub' / 'study.zip'}!/ct"
    skipped = [r.getMessage() for r in caplog.records if "skipped while looking for series" in r.getMessage()]
    assert len(skipped) == 1 and str(tmp_path / "tree" / "notes.txt") in skipped[0]
    assert report_of(out)["discovery_problems"] == [skipped[0].split("series: ", 1)[1]]
