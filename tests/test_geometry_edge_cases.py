"""Geometry and numbering edge cases third-party readers found: tilted-gantry NIfTI, derived SeriesNumber,
the example's SliceLocation, dates/creator of a derived object, and a lossy source's compression history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from ctdenoise.errors import OutputError
from ctdenoise.examples import write_example_series
from ctdenoise.io import DicomOutput, read_volume, write_derived_dicom, write_volume
from ctdenoise.io.derived_header import derived_series_number
from ctdenoise.io.uids import INSTANCE_CREATOR_UID
from ctdenoise.io.volume import LPS_TO_RAS

TILT_DEGREES = 20.0
STEP_MM = 2.5


def _tilt(folder: Path, degrees: float) -> Path:
    """Shift each slice of a built series along its column direction in proportion to its position along
    the normal, as a gantry tilted by ``degrees`` does: the voxel axes become sheared."""
    files = sorted(folder.glob("*.dcm"))
    first = pydicom.dcmread(files[0])
    orientation = np.asarray(first.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.asarray(first.ImagePositionPatient, dtype=float)
    for path in files:
        ds = pydicom.dcmread(path)
        position = np.asarray(ds.ImagePositionPatient, dtype=float)
        along = float((position - origin) @ normal)
        shifted = position + orientation[3:] * along * np.tan(np.radians(degrees))
        ds.ImagePositionPatient = [f"{v:.4f}" for v in shifted]
        ds.save_as(path)
    return folder


def _corner_errors_mm(affine_lps: np.ndarray, shape_zyx: tuple[int, int, int], position_of) -> float:
    slices, rows, cols = shape_zyx
    worst = 0.0
    for index in [(i, j, k) for i in (0, cols - 1) for j in (0, rows - 1) for k in (0, slices - 1)]:
        true = (affine_lps @ [*index, 1.0])[:3]
        worst = max(worst, float(np.linalg.norm(np.asarray(position_of(index)) - true)))
    return worst


def _readers_errors_mm(path: Path, affine_lps: np.ndarray, shape) -> dict[str, float]:
    """Largest voxel position error of nibabel's sform and qform and of SimpleITK, for a written NIfTI."""
    image = nib.load(path)
    errors = {}
    for name, affine in (("sform", image.get_sform()), ("qform", image.get_qform())):
        lps = LPS_TO_RAS @ affine
        errors[name] = _corner_errors_mm(affine_lps, shape, lambda idx, a=lps: (a @ [*idx, 1.0])[:3])
    itk = sitk.ReadImage(str(path))
    errors["SimpleITK"] = _corner_errors_mm(
        affine_lps, shape, lambda idx: itk.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx])
    )
    return errors


def test_tilted_series_to_nifti_is_refused_naming_the_exact_formats(build_series, tmp_path):
    volume = read_volume(_tilt(build_series([k * STEP_MM for k in range(5)], source="CT_small.dcm"), TILT_DEGREES))
    axes = volume.direction
    assert np.degrees(np.arccos(abs(axes[:, 2] @ np.cross(axes[:, 0], axes[:, 1])))) == pytest.approx(TILT_DEGREES)
    with pytest.raises(OutputError, match="NRRD") as refused:
        write_volume(volume, volume.hu, tmp_path / "tilted", format="nifti")
    assert "mha" in str(refused.value) and "tilted" in str(refused.value)
    assert not list(tmp_path.glob("*tilted*"))  # nothing written, not even a staging file
    for fmt, suffix in (("nrrd", ".nrrd"), ("mha", ".mha")):  # the formats named hold the shear exactly
        (written,) = write_volume(volume, volume.hu, tmp_path / f"tilted_{fmt}", format=fmt)
        assert written.suffix == suffix
        itk = sitk.ReadImage(str(written))
        error = _corner_errors_mm(volume.affine, volume.hu.shape,
                                  lambda idx: itk.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx]))  # noqa: B023 - called at once
        assert error < 0.01


def test_untilted_oblique_nifti_reads_the_same_in_every_reader(build_series, tmp_path):
    volume = read_volume(build_series([k * STEP_MM for k in range(4)], source="CT_small.dcm"))
    rotation = np.eye(4)
    angle = np.radians(17.0)
    rotation[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    oblique = volume.with_hu(volume.hu)
    oblique.affine = rotation @ volume.affine
    (written,) = write_volume(oblique, oblique.hu, tmp_path / "oblique", format="nifti")
    errors = _readers_errors_mm(written, oblique.affine, oblique.hu.shape)
    assert max(errors.values()) < 0.1, errors


def test_slight_tilt_within_tolerance_is_written_and_agrees_in_every_reader(build_series, tmp_path):
    volume = read_volume(_tilt(build_series([k * STEP_MM for k in range(3)], source="CT_small.dcm"), 0.05))
    (written,) = write_volume(volume, volume.hu, tmp_path / "slight", format="nifti")
    errors = _readers_errors_mm(written, volume.affine, volume.hu.shape)
    assert max(errors.values()) < 0.1, errors


def _source(series_number, uid="1.2.3.4") -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.SeriesInstanceUID = uid
    if series_number is not None:
        ds.SeriesNumber = series_number
    return ds


@pytest.mark.parametrize("number", [None, 0, 3, 99999, 100003, 2147483000, 2147483647, -5])
def test_derived_series_number_is_valid_is_and_starts_with_the_source_number(number):
    derived = derived_series_number(_source(number), "ctdenoise 0.1.0 model x, strength 1")
    assert 1 <= derived <= 2147483647
    assert derived != (number or 0)
    readable = number is not None and 0 <= number <= 2147482
    assert derived // 1000 == (number if readable else 0) and derived % 1000 >= 1  # 3 -> 3001 .. 3999
    assert derived == derived_series_number(_source(number), "ctdenoise 0.1.0 model x, strength 1")  # deterministic


def test_derived_series_numbers_differ_between_settings_and_between_sources():
    settings = [f"ctdenoise 0.1.0 model default@abc, strength {s / 10:g}" for s in range(11)]
    numbers = {derived_series_number(_source(2147483000), text) for text in settings}
    assert len(numbers) == len(settings)
    assert derived_series_number(_source(5, "1.2.3.4"), settings[0]) != derived_series_number(_source(5, "1.2.3.5"),
                                                                                               settings[0])


def test_written_series_number_is_valid_for_a_huge_source_number(build_series, tmp_path):
    folder = build_series([0.0, 5.0], source="CT_small.dcm")
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = 2147483000
        ds.save_as(path)
    volume = read_volume(folder)
    numbers = []
    for k, strength in enumerate(("0.5", "1")):
        paths = write_derived_dicom(volume, volume.hu, tmp_path / f"d{k}", DicomOutput("x", f"test, strength {strength}"))
        numbers.append(int(pydicom.dcmread(paths[0]).SeriesNumber))
    assert all(n <= 2147483647 for n in numbers) and numbers[0] != numbers[1]


def test_example_slice_location_follows_the_position(tmp_path):
    folder = write_example_series(tmp_path / "example")
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    locations = [float(ds.SliceLocation) for ds in datasets]
    along = [float(ds.ImagePositionPatient[2]) for ds in datasets]  # axial example: the normal is +z
    assert len(set(locations)) == len(datasets)
    np.testing.assert_allclose(np.diff(locations), np.diff(along), atol=1e-3)


def test_derived_dates_and_creator_say_when_and_by_whom_the_derived_object_was_made(build_series, tmp_path):
    folder = build_series([0.0, 5.0], source="CT_small.dcm")
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.InstanceCreatorUID = "1.2.3.999"  # the scanner's
        ds.TimezoneOffsetFromUTC = "-0500"
        ds.SeriesDate, ds.SeriesTime, ds.ContentDate, ds.ContentTime = "19990101", "101010", "19990101", "101011"
        ds.AcquisitionDate, ds.AcquisitionTime = "19990101", "101009"
        ds.save_as(path)
    volume = read_volume(folder)
    before = datetime.now(timezone(-timedelta(hours=5))).replace(tzinfo=None, microsecond=0)
    paths = write_derived_dicom(volume, volume.hu, tmp_path / "d", DicomOutput("x", "dates"))
    after = datetime.now(timezone(-timedelta(hours=5))).replace(tzinfo=None) + timedelta(seconds=1)
    derived = [pydicom.dcmread(p) for p in paths]
    for ds in derived:
        assert ds.InstanceCreatorUID == INSTANCE_CREATOR_UID
        assert (ds.AcquisitionDate, ds.AcquisitionTime) == ("19990101", "101009")  # acquisition stays the source's
        for date, time in (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime"),
                           ("InstanceCreationDate", "InstanceCreationTime")):
            when = datetime.strptime(f"{ds[date].value}{ds[time].value}", "%Y%m%d%H%M%S.%f")
            assert before <= when <= after, (date, when)  # now, in the source's UTC offset
    assert len({(ds.SeriesDate, ds.SeriesTime) for ds in derived}) == 1


def test_lossy_source_keeps_its_lossy_compression_history(build_series, tmp_path):
    folder = build_series([0.0, 5.0], source="CT_small.dcm")
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = ["8.5"]
        ds.LossyImageCompressionMethod = ["ISO_10918_1"]
        ds.DerivationDescription = "Lossy compression JPEG 8.5:1"
        item = pydicom.Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113040", "DCM", "Lossy Compression"
        ds.DerivationCodeSequence = [item]
        ds.save_as(path)
    volume = read_volume(folder)
    paths = write_derived_dicom(volume, volume.hu, tmp_path / "d", DicomOutput("x", "ctdenoise test, strength 1"))
    ds = pydicom.dcmread(paths[0])
    assert ds.LossyImageCompression == "01"
    assert float(ds.LossyImageCompressionRatio) == 8.5 and ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert ds.DerivationDescription == "Lossy compression JPEG 8.5:1; ctdenoise test, strength 1"
    assert [item.CodeValue for item in ds.DerivationCodeSequence] == ["113040", "113087"]


def test_source_in_a_lossy_syntax_without_a_record_gets_one(build_series, tmp_path):
    volume = read_volume(build_series([0.0, 5.0], source="CT_small.dcm"))
    for ds in volume.dicom_datasets:  # as if the files had been read from JPEG baseline
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
    volume.dicom_datasets[1].LossyImageCompressionMethod = "ISO_15444_1"  # an earlier, other method: kept first
    paths = write_derived_dicom(volume, volume.hu, tmp_path / "d", DicomOutput("x", "y"))
    ds = pydicom.dcmread(paths[0])
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert list(pydicom.dcmread(paths[1]).LossyImageCompressionMethod) == ["ISO_15444_1", "ISO_10918_1"]
