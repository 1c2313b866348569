"""DICOM reading and derived write-back: slice sorting, geometry checks, typed errors, round trips."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

from conftest import real_test_file
from ctdenoise.errors import (
    EmptyInputError,
    ImageTooLargeError,
    MixedSeriesError,
    NotCTError,
    NotDicomError,
    OutputError,
    PixelDataError,
    SliceGeometryError,
    UnsupportedTransferSyntaxError,
)
from ctdenoise.io import PADDING_HU, DicomOutput, find_series, read_volume, write_derived_dicom


def _derive(volume, hu, out: Path, series_number: int | None = None, overwrite: bool = False):
    output = DicomOutput("[ctdenoise test]", "denoised by a test", series_number=series_number)
    return write_derived_dicom(volume, hu, out, output, overwrite=overwrite)


def test_slices_are_sorted_by_position_not_instance_number(build_series):
    """Built series (real 512x512 slice copied 4x): InstanceNumbers and file names disagree with positions."""
    folder = build_series([7.5, 0.0, 5.0, 2.5], instance_numbers=[1, 2, 3, 4])
    volume = read_volume(folder)
    offsets = [10 * k for k in (1, 3, 2, 0)]  # copy k carries +10*k stored units
    centre = volume.hu[:, 200:300, 200:300].mean(axis=(1, 2))
    np.testing.assert_allclose(centre - centre[0], np.asarray(offsets) - offsets[0], atol=1e-3)
    assert [ds.InstanceNumber for ds in volume.dicom_datasets] == [2, 4, 3, 1]
    assert volume.spacing[0] == pytest.approx(2.5)
    assert volume.affine[:3, 2] == pytest.approx(volume.direction[:, 2] * 2.5)


def test_missing_slice_is_a_geometry_error(build_series):
    folder = build_series([0.0, 2.5, 5.0, 10.0])  # 7.5 missing: 5 mm gap > 1.5 x 2.5 mm
    with pytest.raises(SliceGeometryError, match="missing slices") as caught:
        read_volume(folder)
    assert caught.value.path == folder


def test_duplicated_slice_position_is_a_geometry_error(build_series):
    with pytest.raises(SliceGeometryError, match="duplicated slice position"):
        read_volume(build_series([0.0, 2.5, 2.5, 5.0]))


def test_inconsistent_pixel_spacing_is_a_geometry_error(build_series):
    folder = build_series([0.0, 2.5, 5.0])
    path = folder / "slice001.dcm"
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [0.5, 0.5]
    ds.save_as(path)
    with pytest.raises(SliceGeometryError, match="inconsistent PixelSpacing"):
        read_volume(folder)


def test_padding_voxels_become_air_and_are_written_back_as_padding(tmp_path):
    source = real_test_file("693_UNCR.dcm")  # PixelPaddingValue -2000 outside the reconstruction circle
    volume = read_volume(source)
    assert volume.padding_mask is not None and volume.padding_mask.sum() > 1000
    assert np.all(volume.hu[volume.padding_mask] == PADDING_HU)
    [derived] = _derive(volume, volume.hu + 5.0, tmp_path / "out")
    stored = pydicom.dcmread(derived).pixel_array
    assert np.all(stored[volume.padding_mask[0]] == -2000)


def test_derived_series_round_trip_keeps_hu_geometry_and_headers(build_series, tmp_path):
    """Built series of 3 real slices -> derived DICOM -> read: same HU (within one stored unit) and geometry."""
    volume = read_volume(build_series([0.0, 2.5, 5.0]))
    rng = np.random.default_rng(0)
    new_hu = volume.hu + rng.normal(0, 20, volume.hu.shape).astype(np.float32)
    paths = _derive(volume, new_hu, tmp_path / "derived", series_number=77)
    again = read_volume(tmp_path / "derived")
    slope = float(volume.dicom_datasets[0].RescaleSlope)
    inside = ~volume.padding_mask
    assert np.abs(again.hu[inside] - new_hu[inside]).max() <= slope / 2 + 1e-3
    np.testing.assert_allclose(again.affine, volume.affine, atol=1e-4)
    assert again.spacing == pytest.approx(volume.spacing)

    for path, source in zip(paths, volume.dicom_datasets):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPInstanceUID != source.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.SeriesNumber == 77
        assert ds.SeriesDescription.endswith("[ctdenoise test]")
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert list(ds.ImageType)[2:] == list(source.ImageType)[2:]
        assert ds.DerivationDescription == "denoised by a test"
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ds.SourceImageSequence[0].ReferencedSOPClassUID == source.SOPClassUID
        assert "InstanceCreationDate" in ds and "InstanceCreationTime" in ds
        for keyword in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient",
                        "InstanceNumber", "BitsStored", "PixelRepresentation", "RescaleIntercept", "KVP"):
            assert ds.get(keyword) == source.get(keyword), keyword
    assert len({pydicom.dcmread(p).SeriesInstanceUID for p in paths}) == 1


def test_derived_values_are_clipped_to_the_stored_range(tmp_path):
    volume = read_volume(real_test_file("693_UNCR.dcm"))  # BitsStored 14, signed: stored -8192..8191
    [derived] = _derive(volume, np.full(volume.hu.shape, 1e6, np.float32), tmp_path / "out")
    stored = pydicom.dcmread(derived).pixel_array
    assert stored[~volume.padding_mask[0]].max() == 8191


def test_private_tags_survive_derivation(ct_small, tmp_path):
    volume = read_volume(ct_small)
    private = [e.tag for e in volume.dicom_datasets[0] if e.tag.is_private]
    assert private, "CT_small.dcm has private tags"
    [derived] = _derive(volume, volume.hu, tmp_path / "out")
    ds = pydicom.dcmread(derived)
    assert all(tag in ds for tag in private)


def test_compressed_sources_decode_and_are_written_uncompressed(tmp_path):
    lossless = read_volume(real_test_file("693_J2KR.dcm"))  # JPEG 2000 lossless
    reference = read_volume(real_test_file("693_UNCR.dcm"))  # the same image, uncompressed
    np.testing.assert_array_equal(lossless.hu, reference.hu)
    jpeg_lossless = read_volume(real_test_file("bad_sequence.dcm"))  # JPEG Lossless SV1 (gdcm)
    assert jpeg_lossless.hu.shape == (1, 512, 512)
    [derived] = _derive(lossless, lossless.hu, tmp_path / "out")
    ds = pydicom.dcmread(derived)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not ds["PixelData"].is_undefined_length


def test_enhanced_ct_round_trip_keeps_one_multiframe_file_with_functional_groups(tmp_path):
    volume = read_volume(real_test_file("eCT_Supplemental.dcm"))
    assert volume.source_format == "dicom-enhanced" and volume.hu.shape == (2, 512, 512)
    new_hu = volume.hu + 3.0
    [derived] = _derive(volume, new_hu, tmp_path / "out")
    ds = pydicom.dcmread(derived)
    assert int(ds.NumberOfFrames) == 2
    assert list(ds.ImageType)[0] == "DERIVED"
    groups = ds.PerFrameFunctionalGroupsSequence
    source = volume.dicom_datasets[0]
    for frame, group in enumerate(groups):
        reference = group.DerivationImageSequence[0].SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert reference.ReferencedFrameNumber == frame + 1
        assert (group.PlanePositionSequence[0].ImagePositionPatient
                == source.PerFrameFunctionalGroupsSequence[frame].PlanePositionSequence[0].ImagePositionPatient)
    again = read_volume(derived)
    assert np.abs(again.hu - new_hu).max() <= 0.5 + 1e-3
    np.testing.assert_allclose(again.affine, volume.affine, atol=1e-6)


def test_output_folder_holding_the_input_is_refused(build_series):
    folder = build_series([0.0, 2.5])
    volume = read_volume(folder)
    with pytest.raises(OutputError, match="refusing to write over the input"):
        _derive(volume, volume.hu, folder, overwrite=True)
    assert len(list(folder.iterdir())) == 2


def test_existing_output_folder_is_kept_unless_overwrite(ct_small, tmp_path):
    volume = read_volume(ct_small)
    out = tmp_path / "out"
    _derive(volume, volume.hu, out)
    with pytest.raises(OutputError, match="not empty"):
        _derive(volume, volume.hu, out)
    [path] = _derive(volume, volume.hu + 1, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left
    assert path.exists()


def test_not_dicom_is_rejected(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("not an image")
    with pytest.raises(NotDicomError) as caught:
        read_volume(path)
    assert caught.value.path == path


def test_other_modality_is_rejected():
    with pytest.raises(NotCTError, match="Modality MR"):
        read_volume(real_test_file("MR_small.dcm"))


def test_empty_folder_is_rejected(tmp_path):
    with pytest.raises(EmptyInputError):
        read_volume(tmp_path)


def test_folder_with_two_series_is_mixed(build_series, tmp_path, ct_small):
    folder = build_series([0.0, 2.5])
    (folder / "other.dcm").write_bytes(ct_small.read_bytes())
    with pytest.raises(MixedSeriesError, match="holds 2 series"):
        read_volume(folder)
    refs = find_series(folder)
    assert [len(ref.paths) for ref in refs] in ([2, 1], [1, 2])
    assert all("/" not in ref.key or ref.key.split("/")[0] != ".." for ref in refs)


def test_find_series_groups_a_tree_and_reports_skipped_files(build_series, tmp_path, ct_small):
    build_series([0.0, 2.5], name="a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "single.dcm").write_bytes(ct_small.read_bytes())
    (tmp_path / "b" / "readme.txt").write_text("hello")
    refs = find_series(tmp_path)
    assert [ref.kind for ref in refs] == ["dicom", "dicom"]
    assert [ref.key.split("/")[0] for ref in refs] == ["a", "b"]
    assert all(ref.series_uid for ref in refs)
    problems = [p for ref in refs for p in ref.problems]
    assert [(p.name, "not a DICOM" in why) for p, why in problems] == [("readme.txt", True)]
    assert read_volume(refs[0]).hu.shape == (2, 512, 512)
    assert find_series(tmp_path) == refs  # stable


def test_truncated_pixel_data_is_rejected(ct_small, tmp_path):
    ds = pydicom.dcmread(ct_small)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    path = tmp_path / "truncated.dcm"
    ds.save_as(path)
    with pytest.raises(PixelDataError, match="truncated"):
        read_volume(path)


def test_transfer_syntax_without_plugin_is_rejected(ct_small, tmp_path):
    ds = pydicom.dcmread(ct_small)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no pixel decoder exists
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].is_undefined_length = True
    path = tmp_path / "mpeg.dcm"
    ds.save_as(path)
    with pytest.raises(UnsupportedTransferSyntaxError, match="MPEG2"):
        read_volume(path)


def test_declared_size_over_the_limit_is_rejected_before_decoding(tmp_path, ct_small):
    ds = pydicom.dcmread(ct_small)
    ds.Rows, ds.Columns = 60000, 60000  # declares 3.6e9 voxels; the pixel data is tiny
    path = tmp_path / "bomb.dcm"
    ds.save_as(path)
    with pytest.raises(ImageTooLargeError, match="more than the limit"):
        read_volume(path)
    with pytest.raises(ImageTooLargeError):
        read_volume(ct_small, max_voxels=128 * 128 - 1)


def test_with_hu_checks_the_shape(ct_small):
    volume = read_volume(ct_small)
    assert volume.with_hu(volume.hu * 0).dicom_datasets is volume.dicom_datasets
    with pytest.raises(ValueError, match="shape"):
        volume.with_hu(np.zeros((2, 2, 2)))


def test_single_file_reads_its_own_slice_with_normal_along_the_stack(ct_small):
    volume = read_volume(ct_small)
    ds = volume.dicom_datasets[0]
    np.testing.assert_allclose(volume.origin, [float(v) for v in ds.ImagePositionPatient])
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    np.testing.assert_allclose(volume.direction[:, 0], orientation[:3])
    np.testing.assert_allclose(volume.direction[:, 1], orientation[3:])
    np.testing.assert_allclose(volume.direction[:, 2], np.cross(orientation[:3], orientation[3:]))
    assert copy.copy(volume.description) and "^" not in volume.description
