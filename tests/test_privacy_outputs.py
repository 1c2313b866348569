"""Patient privacy: a batch run never writes patient data outside the derived DICOM files.

The input series carry distinctive values in the patient, study and physician attributes (some
of them malformed, as real archives have them, so that pydicom's value warnings would quote
them). After a run with good and broken series, stdout, stderr (logs, progress bar, warnings),
``report.json`` and every other non-DICOM file under OUTDIR are scanned for those values.
The derived DICOM files keep the patient and study modules by design (a derived series joins its source's
study; docs/io.md, "Writing") and
are left out of the scan; the test checks that they do keep them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from ctdenoise.cli import main

CT_SMALL = "CT_small.dcm"

PHI = {
    "PatientName": "Zyxwvut^Qwertyuiop",
    "PatientID": "PID-98765-XYZQ",
    "PatientBirthDate": "1923-04-17",  # malformed DA (pydicom's warning would quote it)
    "OtherPatientIDs": "OPID-55501-KLM",
    "PatientAddress": "42 Jabberwock Lane",
    "AccessionNumber": "ACC-31337-JQ",
    "ReferringPhysicianName": "Drplumbus^Gazorpazorp",
    "InstitutionName": "Saint Quuxbridge Infirmary",
    "StudyID": "STU-77113",
}
PHI_FRAGMENTS = [*PHI.values(), "Zyxwvut", "Qwertyuiop", "98765", "19230417", "Jabberwock", "Quuxbridge"]


def add_phi(folder: Path, broken: bool = False) -> None:
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    if broken:  # a series that fails: its error message must not quote the patient either
        victim = sorted(folder.iterdir())[0]
        victim.write_bytes(victim.read_bytes()[:-3000])


@pytest.fixture
def phi_archive(build_series, tmp_path) -> Path:
    add_phi(build_series([0.0, 2.5], name="archive/a/ct", source=CT_SMALL))
    add_phi(build_series([0.0, 2.5], name="archive/b/ct", source=CT_SMALL), broken=True)
    missing_pixels = build_series([0.0], name="archive/c/ct", source=CT_SMALL)
    add_phi(missing_pixels)
    (only,) = missing_pixels.iterdir()
    ds = pydicom.dcmread(only)
    del ds.PixelData
    ds.save_as(only)
    return tmp_path / "archive"


def test_no_patient_data_in_logs_progress_report_or_errors(phi_archive, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHONWARNINGS": "default"}  # show every warning, as a user's shell might
    run = subprocess.run(
        [sys.executable, "-m", "ctdenoise", "-v", "denoise", str(phi_archive), "-o", str(out),
         "--model", str(tiny_checkpoint), "--device", "cpu"],
        capture_output=True, text=True, env=environment, timeout=600,
    )
    assert run.returncode == 1, run.stderr  # one series written, two failed
    assert main(["denoise", str(phi_archive), "-o", str(tmp_path / "dry"), "--dry-run"]) == 0
    dry = capsys.readouterr()
    scanned = {"stdout": run.stdout, "stderr": run.stderr, "dry-run stdout": dry.out, "dry-run stderr": dry.err}
    derived = []
    for path in out.rglob("*"):
        if path.is_file():
            if path.suffix == ".dcm":
                derived.append(path)
            else:
                scanned[str(path.relative_to(out))] = path.read_bytes().decode("utf-8", "replace")
    assert "report.json" in scanned and len(derived) == 2
    leaks = {(where, value) for where, text in scanned.items() for value in PHI_FRAGMENTS if value in text}
    assert not leaks, f"patient data found in outputs: {sorted(leaks)}"
    kept = pydicom.dcmread(derived[0])
    assert (str(kept.PatientName), kept.PatientID) == (PHI["PatientName"], PHI["PatientID"])  # by design
