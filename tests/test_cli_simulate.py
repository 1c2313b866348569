"""``ctdenoise simulate`` writes a reproducible simulated low-dose copy of a real series."""

from __future__ import annotations

import numpy as np
import pydicom

from ctdenoise.cli import main
from ctdenoise.io import read_volume


def test_simulate_writes_noisier_derived_dicom_and_nifti(build_series, tmp_path):
    series = build_series([0.0, 5.0], name="full", source="CT_small.dcm")
    assert main(["simulate", str(series), "-o", str(tmp_path / "quarter"), "--dose", "0.25", "--views", "180"]) == 0
    assert main(["simulate", str(series), "-o", str(tmp_path / "quarter.nii.gz"), "--dose", "0.25",
                 "--views", "180", "--format", "nifti"]) == 0

    full, quarter = read_volume(series), read_volume(tmp_path / "quarter")
    nifti = read_volume(tmp_path / "quarter.nii.gz")
    added = quarter.hu - full.hu
    assert 5.0 < added.std() < 200.0  # noise was added ...
    assert abs(added.mean()) < 5.0  # ... without shifting the mean HU
    np.testing.assert_allclose(nifti.hu, quarter.hu, atol=0.51)  # same seed, same noise (DICOM rounds to 1 HU)
    derived = pydicom.dcmread(sorted((tmp_path / "quarter").iterdir())[0])
    assert "simulated low dose: k=0.25" in derived.DerivationDescription
