"""``ctdenoise denoise`` writes ``report.html`` next to ``report.json``: the night at a glance, self-contained."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from ctdenoise.cli import main
from ctdenoise.jobs.report import BatchReport, SeriesResult
from ctdenoise.jobs.report_html import render_batch_report

CT_SMALL = "CT_small.dcm"


def pictures(html: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
            for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


@pytest.fixture
def archive(build_series, tmp_path) -> Path:
    build_series([0.0, 2.5, 5.0], name="archive/a/ct", source=CT_SMALL)
    broken = build_series([0.0, 2.5], name="archive/b/ct", source=CT_SMALL)
    victim = sorted(broken.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-3000])
    (tmp_path / "archive" / "volumes").mkdir()
    hu = np.random.default_rng(0).normal(40.0, 20.0, (40, 36, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([-0.7, -0.7, 2.0, 1.0])), tmp_path / "archive" / "volumes" / "scan.nii.gz")
    return tmp_path / "archive"


def test_a_batch_run_writes_a_self_contained_report_html(archive, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert main(["denoise", str(archive), "-o", str(out), "--model", str(tiny_checkpoint), "--device", "cpu"]) == 1
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert "<link" not in html and "<script" not in html and "http" not in html
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', html))
    done = [s for s in report["series"] if s["status"] == "done"]
    failed = [s for s in report["series"] if s["status"] == "failed"]
    assert len(done) == 2 and len(failed) == 1
    for series in report["series"]:
        assert series["key"] in html
    assert failed[0]["error"].split(":")[-1].strip() in html and 'class="failed"' in html
    images = pictures(html)
    assert len(images) == 2 * len(done)  # before and after of every finished series, none for the failed one
    before, after = images[0], images[1]
    assert before.shape == after.shape and before.ndim == 2
    assert not np.array_equal(before, after)  # the model changed the middle slice
    for series in done:
        assert f"{series['noise_hu_before']:.1f}" in html


@pytest.mark.slow
def test_a_rerun_keeps_the_pictures_of_skipped_series(archive, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    argv = ["denoise", str(archive), "-o", str(out), "--model", str(tiny_checkpoint), "--device", "cpu"]
    main(argv)
    main(argv)
    report = json.loads((out / "report.json").read_text())
    assert sum(s["status"] == "skipped" for s in report["series"]) == 2
    assert len(pictures((out / "report.html").read_text())) == 4


def test_report_text_is_escaped_and_a_missing_picture_does_not_fail(tmp_path):
    report = BatchReport(model="m<1>", output_format="dicom", series=[
        SeriesResult("k<script>", "in", "done", slices=3, output="gone", noise_hu_before=12.0, noise_hu_after=3.0),
        SeriesResult("bad", "in2", "failed", error="in2/x.dcm: <truncated> pixel data"),
    ])
    html = render_batch_report(report, [], tmp_path)
    assert "<script>" not in html and "k&lt;script&gt;" in html and "&lt;truncated&gt;" in html
    assert "12.0" in html and "3.0" in html and "1 done, 1 failed" in html
