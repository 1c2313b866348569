"""Resume that notices changed input: the manifest record of each output series, redo or report, report totals.

Series are built from pydicom's real CT_small slice; a series "gains slices" as an archive does when
late images of a study arrive: new files with new SOP Instance UIDs in the same series.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from ctdenoise.cli import EXIT_OK, EXIT_PARTIAL, main
from ctdenoise.jobs.manifest import MANIFEST_DIR, manifest_path

CT_SMALL = "CT_small.dcm"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def denoise(*args: str | Path) -> int:
    return main(["denoise", *map(str, args), "--device", "cpu"])


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def by_key(report: dict) -> dict[str, dict]:
    return {s["key"]: s for s in report["series"]}


def add_slices(folder: Path, count: int, step_mm: float = 2.5) -> None:
    """Append ``count`` slices to the series in ``folder`` (same series, new SOP Instance UIDs, further along)."""
    files = sorted(folder.iterdir())
    last = pydicom.dcmread(files[-1])
    orientation = np.asarray(last.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    for k in range(1, count + 1):
        ds = copy.deepcopy(last)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        position = np.asarray(last.ImagePositionPatient, dtype=float) + normal * step_mm * k
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.InstanceNumber = len(files) + k
        ds.save_as(folder / f"late{k:03d}.dcm")


def output_files(out: Path, key: str) -> list[str]:
    return sorted(p.name for p in (out / key).iterdir())


@pytest.fixture
def two_series(build_series, tmp_path) -> Path:
    build_series([0.0, 2.5, 5.0], name="archive/a/ct", source=CT_SMALL)
    build_series([0.0, 2.5], name="archive/b/ct", source=CT_SMALL)
    return tmp_path / "archive"


def key_under(report: dict, prefix: str) -> str:
    return next(k for k in by_key(report) if k.startswith(prefix))


def test_a_series_that_gained_slices_is_redone_on_the_rerun(two_series, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert denoise(two_series, "-o", out, "--model", tiny_checkpoint) == EXIT_OK
    key_a, key_b = key_under(report_of(out), "a/"), key_under(report_of(out), "b/")
    assert len(output_files(out, key_a)) == 3

    add_slices(two_series / "a" / "ct", 2)
    assert denoise(two_series, "-o", out, "--model", tiny_checkpoint) == EXIT_OK

    series = by_key(report_of(out))
    assert series[key_a]["status"] == "done" and series[key_a]["slices"] == 5
    assert series[key_a]["change"] == "input changed: 3 files then, 5 now"
    assert len(output_files(out, key_a)) == 5
    assert series[key_b]["status"] == "skipped" and series[key_b]["change"] is None
    # the redone series is now up to date: a third run skips both
    assert denoise(two_series, "-o", out, "--model", tiny_checkpoint) == EXIT_OK
    assert {s["status"] for s in report_of(out)["series"]} == {"skipped"}


def test_same_number_of_files_with_other_instances_is_a_change(two_series, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    denoise(two_series, "-o", out, "--model", tiny_checkpoint)
    key_b = key_under(report_of(out), "b/")
    victim = sorted((two_series / "b" / "ct").iterdir())[0]
    ds = pydicom.dcmread(victim)
    ds.SOPInstanceUID = generate_uid()  # the archive re-sent the image under a new identity
    ds.save_as(victim)

    assert denoise(two_series, "-o", out, "--model", tiny_checkpoint) == EXIT_OK
    assert by_key(report_of(out))[key_b]["change"] == "input changed: same number of files, different SOP Instance UIDs"


def test_with_if_changed_report_a_changed_series_is_reported_not_redone(two_series, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    denoise(two_series, "-o", out, "--model", tiny_checkpoint)
    key_a = key_under(report_of(out), "a/")
    before = {name: (out / key_a / name).read_bytes() for name in output_files(out, key_a)}
    add_slices(two_series / "a" / "ct", 2)
    capsys.readouterr()

    code = denoise(two_series, "-o", out, "--model", tiny_checkpoint, "--if-changed", "report")

    assert code == EXIT_PARTIAL
    entry = by_key(report_of(out))[key_a]
    assert entry["status"] == "changed" and entry["change"] == "input changed: 3 files then, 5 now"
    assert entry["slices"] == 3  # what the kept output holds
    assert {name: (out / key_a / name).read_bytes() for name in output_files(out, key_a)} == before
    assert f"{key_a}: input changed, output kept" in capsys.readouterr().err
    # without the flag the next run redoes it
    assert denoise(two_series, "-o", out, "--model", tiny_checkpoint) == EXIT_OK
    assert len(output_files(out, key_a)) == 5


def test_report_after_a_resume_keeps_earlier_results_and_totals(two_series, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    denoise(two_series, "-o", out, "--model", tiny_checkpoint)
    first = by_key(report_of(out))
    key_a, key_b = key_under(report_of(out), "a/"), key_under(report_of(out), "b/")
    # b's output is lost (as if the first run had been stopped before it): the re-run does only b
    for path in sorted((out / key_b).iterdir()):
        path.unlink()
    (out / key_b).rmdir()

    assert denoise(two_series, "-o", out, "--model", tiny_checkpoint) == EXIT_OK

    report = report_of(out)
    series = by_key(report)
    assert series[key_a]["status"] == "skipped"
    for field in ("slices", "seconds", "output", "noise_hu_before", "noise_hu_after"):
        if field in first[key_a]:
            assert series[key_a][field] == first[key_a][field], field
    assert series[key_b]["status"] == "done" and series[key_b]["slices"] == 2
    totals = report["totals"]
    assert totals["series"] == totals["complete"] == 2
    assert totals["slices"] == 3 + 2
    assert totals["seconds"] == pytest.approx(first[key_a]["seconds"] + series[key_b]["seconds"], abs=0.002)


def test_an_output_without_a_record_is_treated_as_changed(two_series, tiny_checkpoint, tmp_path):
    """An older ctdenoise (or a run stopped right after publishing) left no record: nothing proves the
    output matches its input, so it is redone."""
    out = tmp_path / "out"
    denoise(two_series, "-o", out, "--model", tiny_checkpoint)
    key_a = key_under(report_of(out), "a/")
    manifest_path(out, key_a).unlink()

    assert denoise(two_series, "-o", out, "--model", tiny_checkpoint) == EXIT_OK
    entry = by_key(report_of(out))[key_a]
    assert entry["status"] == "done" and entry["change"].startswith("no record of the input")
    assert manifest_path(out, key_a).is_file()


def test_an_image_file_whose_bytes_changed_is_redone(tiny_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    path = folder / "scan.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(0, 50, (32, 32, 2)).astype(np.float32), np.eye(4)), path)
    out = tmp_path / "out"
    denoise(folder, "-o", out, "--model", tiny_checkpoint)
    nib.save(nib.Nifti1Image(rng.normal(0, 50, (32, 32, 3)).astype(np.float32), np.eye(4)), path)

    assert denoise(folder, "-o", out, "--model", tiny_checkpoint) == EXIT_OK
    (entry,) = report_of(out)["series"]
    assert entry["status"] == "done" and entry["slices"] == 3
    assert entry["change"] == "input changed: same number of files, different file contents"


def test_dry_run_shows_slice_counts_changes_and_earlier_results(two_series, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert denoise(two_series, "-o", out, "--dry-run") == EXIT_OK
    planned = json.loads(capsys.readouterr().out)
    assert sorted(s["slices"] for s in planned["series"]) == [2, 3]
    assert {s["status"] for s in planned["series"]} == {"planned"}
    assert planned["totals"]["planned_slices"] == 5
    assert not out.exists()

    denoise(two_series, "-o", out, "--model", tiny_checkpoint)
    add_slices(two_series / "a" / "ct", 1)
    capsys.readouterr()
    assert denoise(two_series, "-o", out, "--dry-run") == EXIT_OK
    captured = capsys.readouterr()
    series = json.loads(captured.out)["series"]
    changed = next(s for s in series if s["key"].startswith("a/"))
    kept = next(s for s in series if s["key"].startswith("b/"))
    assert (changed["status"], changed["slices"], changed["change"]) == ("planned", 4, "input changed: 3 files then, 4 now")
    assert (kept["status"], kept["slices"]) == ("skipped", 2)
    assert "dry run: 1 series to denoise (4 slices), 1 up to date" in captured.err
    assert sorted(p.name for p in (out / MANIFEST_DIR).rglob("*.json")) == sorted(
        Path(s["key"]).name + ".json" for s in series
    )
