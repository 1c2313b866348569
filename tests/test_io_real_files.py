"""Every CT file among pydicom's test files and pydicom-data reads with plausible HU or is rejected
with the documented error; derived copies of the readable ones pass dciodvfy as well as their source."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import real_ct_files
from ctdenoise.errors import PixelDataError, SliceGeometryError
from ctdenoise.io import DicomOutput, read_volume, write_derived_dicom

CT_FILES = real_ct_files()

# Files that must be rejected, with the reason. The TINY_ALPHA file-set (pydicom's DICOMDIR test)
# holds header-only CT instances: no Rows, no pixels.
REJECTED = {"TINY_ALPHA": (PixelDataError, "Rows is missing")}

AIR_WINDOW, TISSUE_WINDOW = (-1100.0, -850.0), (-30.0, 90.0)
MIN_REGION_FRACTION = 0.02
# The dicomdirtests CT files are 16x16 thumbnails: each pixel averages ~1000 tissue pixels, so
# air/tissue peaks only exist in full-size images. Smaller ones get the range check only.
MIN_SIDE_FOR_HU_REGIONS = 128


def _expected_rejection(path: Path):
    return next((value for key, value in REJECTED.items() if key in path.parts), None)


def _histogram_mode(values: np.ndarray, low: float, high: float) -> float:
    counts, edges = np.histogram(values, bins=np.arange(low, high + 10.0, 10.0))
    return float(edges[counts.argmax()] + 5.0)


def _ids(paths):
    return ["/".join(p.parts[-2:]) for p in paths]


def test_real_ct_files_were_found():
    assert len(CT_FILES) >= 10, "pydicom test files / pydicom-data not found"


@pytest.mark.parametrize("path", CT_FILES, ids=_ids(CT_FILES))
def test_real_ct_file_reads_with_plausible_hu_or_is_rejected(path: Path):
    rejection = _expected_rejection(path)
    if rejection is not None:
        error, reason = rejection
        with pytest.raises(error, match=reason) as caught:
            read_volume(path)
        assert caught.value.path == path
        return
    volume = read_volume(path)
    assert volume.hu.dtype == np.float32 and volume.hu.ndim == 3
    assert volume.source_format in ("dicom", "dicom-enhanced")
    assert len(volume.dicom_datasets) == (1 if volume.source_format == "dicom-enhanced" else volume.hu.shape[0])
    hu = volume.hu if volume.padding_mask is None else volume.hu[~volume.padding_mask]
    assert -4096 <= hu.min() and hu.max() <= 4096
    if min(volume.hu.shape[1:]) < MIN_SIDE_FOR_HU_REGIONS:
        return
    air = hu[(hu >= AIR_WINDOW[0]) & (hu <= AIR_WINDOW[1])]
    if air.size >= MIN_REGION_FRACTION * hu.size:  # air around the patient: near -1000 HU
        assert -1060 <= _histogram_mode(air, *AIR_WINDOW) <= -940
    tissue = hu[(hu >= TISSUE_WINDOW[0]) & (hu <= TISSUE_WINDOW[1])]
    if tissue.size >= MIN_REGION_FRACTION * hu.size:  # water-equivalent soft tissue: 0..60 HU
        assert 0 <= float(np.median(tissue)) <= 60


def test_real_series_folders_read_or_are_rejected_for_their_geometry():
    from conftest import PYDICOM_TEST_FILES

    root = PYDICOM_TEST_FILES / "dicomdirtests"
    volume = read_volume(root / "98892001" / "CT5N")
    assert volume.hu.shape == (5, 16, 16)
    assert volume.spacing[0] == pytest.approx(2.5)
    with pytest.raises(SliceGeometryError, match="missing slices"):
        read_volume(root / "77654033" / "CT2")  # z = -99.5, then 103.0, 104.3, 105.5
    with pytest.raises(SliceGeometryError, match="inconsistent ImageOrientationPatient"):
        read_volume(root / "98892001" / "CT2N")  # a sagittal and a coronal localizer


DCIODVFY = shutil.which("dciodvfy")
READABLE = [p for p in CT_FILES if _expected_rejection(p) is None]


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return {line.strip() for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it")
@pytest.mark.parametrize("path", READABLE, ids=_ids(READABLE))
def test_derived_file_has_no_dciodvfy_error_its_source_lacks(path: Path, tmp_path: Path):
    volume = read_volume(path)
    derived = write_derived_dicom(volume, volume.hu, tmp_path / "derived", DicomOutput("ctdenoise", "dciodvfy check"))
    source_errors = _dciodvfy_errors(path)
    new_errors = _dciodvfy_errors(derived[0]) - source_errors
    # Justified exception: a source whose own SOPInstanceUID is invalid (bad_sequence.dcm uses a hex
    # hash) passes that UID verbatim into the derived file's reference to it, where dciodvfy reports
    # it under the referencing tag. It is the same defect, already reported on the source.
    source_uid = str(volume.dicom_datasets[0].SOPInstanceUID)
    if any(source_uid in line for line in source_errors) or not re.fullmatch(r"[0-9.]+", source_uid):
        new_errors = {line for line in new_errors if source_uid not in line and "Referenced SOP Instance UID" not in line}
    assert new_errors == set()
