"""``ctdenoise denoise`` on a tree of real and broken series: good ones written, broken ones reported.

The DICOM series are built from pydicom's real CT_small slice (copied with shifted positions and
new UIDs by the ``build_series`` fixture); the broken ones are built the same way, then damaged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ctdenoise.cli import SUBCOMMANDS, main

CT_SMALL = "CT_small.dcm"


@pytest.fixture
def tree(build_series, tmp_path) -> Path:
    root = tmp_path / "archive"
    build_series([0.0, 5.0, 10.0], instance_numbers=[3, 1, 2], name="archive/patient1/ct_a", source=CT_SMALL)
    build_series([0.0, 2.5], name="archive/patient2/ct_b", source=CT_SMALL)
    truncated = build_series([0.0, 5.0], name="archive/patient3/truncated", source=CT_SMALL)
    victim = sorted(truncated.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-4000])
    build_series([0.0, 5.0, 30.0], name="archive/patient4/gap", source=CT_SMALL)
    affine = np.diag([-0.7, -0.7, 2.0, 1.0])
    hu = np.random.default_rng(0).normal(40.0, 20.0, (40, 36, 2)).astype(np.float32)
    (root / "volumes").mkdir()
    nib.save(nib.Nifti1Image(hu, affine), root / "volumes" / "scan.nii.gz")
    (root / "notes.txt").write_text("not an image")
    return root


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def by_status(report: dict, status: str) -> list[dict]:
    return [s for s in report["series"] if s["status"] == status]


def denoise(*args: str | Path) -> int:
    return main(["denoise", *map(str, args), "--device", "cpu"])


def test_batch_writes_good_series_and_reports_broken_ones(tree, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    inputs_before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}

    assert denoise(tree, "-o", out, "--model", tiny_checkpoint) == 1

    report = read_report(out)
    done = {s["key"] for s in by_status(report, "done")}
    failed = {s["key"].split("/")[0]: s["error"] for s in by_status(report, "failed")}
    assert len(done) == 3 and {k.split("/")[0] for k in done} == {"patient1", "patient2", "volumes"}
    assert set(failed) == {"patient3", "patient4"}
    assert "truncated" in failed["patient3"].lower() or "pixel" in failed["patient3"].lower()
    assert "missing slices" in failed["patient4"]
    assert any("notes.txt" in p for p in report["discovery_problems"])
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == inputs_before  # inputs untouched

    ct_a = next(k for k in done if k.startswith("patient1"))
    derived = [pydicom.dcmread(f) for f in sorted((out / ct_a).iterdir())]
    assert len(derived) == 3
    assert all(list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] for ds in derived)
    nifti = next(k for k in done if k.startswith("volumes"))
    (written,) = list((out / nifti).iterdir())
    assert written.name.endswith(".nii.gz") and nib.load(written).shape == (40, 36, 2)
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]


def test_rerun_skips_finished_series_and_overwrite_redoes_them(tree, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    denoise(tree, "-o", out, "--model", tiny_checkpoint)
    first = {s["key"] for s in by_status(read_report(out), "done")}

    assert denoise(tree, "-o", out, "--model", tiny_checkpoint) == 1
    assert {s["key"] for s in by_status(read_report(out), "skipped")} == first

    assert denoise(tree, "-o", out, "--model", tiny_checkpoint, "--overwrite") == 1
    assert {s["key"] for s in by_status(read_report(out), "done")} == first


def test_dry_run_lists_plans_and_writes_nothing(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert denoise(tree, "-o", out, "--dry-run") == 0
    printed = json.loads(capsys.readouterr().out)
    assert len([s for s in printed["series"] if s["status"] == "planned"]) == 5
    assert not out.exists()


def test_all_good_series_exit_zero(build_series, tiny_checkpoint, tmp_path):
    series = build_series([0.0, 5.0], name="one", source=CT_SMALL)
    assert denoise(series, "-o", tmp_path / "out", "--model", tiny_checkpoint) == 0


@pytest.mark.parametrize("bad", ["output_inside_input", "missing_model"])
def test_usage_errors_exit_two_with_a_clear_message(bad, tree, tiny_checkpoint, tmp_path, capsys):
    if bad == "output_inside_input":
        code = denoise(tree, "-o", tree / "out", "--model", tiny_checkpoint)
        expected = "inside the input"
    else:
        code = denoise(tree, "-o", tmp_path / "out", "--model", tmp_path / "no_such_model")
        expected = "neither a shipped model"
    assert code == 2
    assert expected in capsys.readouterr().err


def test_help_of_every_subcommand(capsys):
    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        assert "usage: ctdenoise" in capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in SUBCOMMANDS)


def test_denoise_command_imports_neither_monai_nor_the_evaluation_code():
    """``ctdenoise denoise`` imports only its own subcommand: a batch job's start-up is not spent on
    MONAI, SciPy's signal module and the evaluation code (about 4 s on a 2-core machine)."""
    probe = (
        "import sys\n"
        "from ctdenoise.cli import build_parser, requested_command\n"
        "command = requested_command(['-v', 'denoise', 'in', '-o', 'out'])\n"
        "build_parser([command]).parse_args(['-v', 'denoise', 'in', '-o', 'out'])\n"
        "print(command, sorted(m for m in ('monai', 'ctdenoise.evaluate', 'ctdenoise.simulate') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "denoise []"


def test_onnxruntime_backend_writes_the_series_torch_writes(build_series, tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime", reason="the optional extra ctdenoise[onnx] is not installed")
    series = build_series([0.0, 5.0, 10.0], name="in/ct", source=CT_SMALL)
    for backend in ("torch", "onnxruntime"):
        assert denoise(series.parent, "-o", tmp_path / backend, "--model", tiny_checkpoint, "--backend", backend) == 0
    torch_files = sorted((tmp_path / "torch").rglob("IM*.dcm"))
    ort_files = sorted((tmp_path / "onnxruntime").rglob("IM*.dcm"))
    assert len(torch_files) == len(ort_files) == 3
    for ours, theirs in zip(torch_files, ort_files):
        np.testing.assert_allclose(pydicom.dcmread(theirs).pixel_array, pydicom.dcmread(ours).pixel_array, atol=1)


def test_io_workers_reach_the_reader_and_writer_and_leave_the_pixels_alone(build_series, tiny_checkpoint, tmp_path,
                                                                          monkeypatch):
    """``--io-workers N`` sizes the pools that decode and encode the files; the pixels do not depend on it."""
    from ctdenoise.io import dicom_read, dicom_write

    series = build_series([0.0, 5.0, 10.0], name="in/ct", source=CT_SMALL)
    asked: dict[str, list] = {"read": [], "write": []}
    for module, kind in ((dicom_read, "read"), (dicom_write, "write")):
        def spy(fn, items, *, workers=None, original=module.map_files, kind=kind, **kwargs):
            asked[kind].append(workers)
            return original(fn, items, workers=workers, **kwargs)
        monkeypatch.setattr(module, "map_files", spy)
    for workers in ("1", "2"):
        assert denoise(series.parent, "-o", tmp_path / workers, "--model", tiny_checkpoint, "--backend", "torch",
                       "--io-workers", workers) == 0
    assert set(asked["read"]) == {1, 2} and set(asked["write"]) == {1, 2}
    serial, parallel = (sorted((tmp_path / w).rglob("IM*.dcm")) for w in ("1", "2"))
    assert len(serial) == len(parallel) == 3
    for one, two in zip(serial, parallel):
        np.testing.assert_array_equal(pydicom.dcmread(two).pixel_array, pydicom.dcmread(one).pixel_array)


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_io_workers_must_be_a_positive_whole_number(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        denoise(tmp_path, "-o", tmp_path / "out", "--io-workers", bad)
    assert stopped.value.code == 2 and "--io-workers" in capsys.readouterr().err
