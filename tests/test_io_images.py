"""NIfTI, NRRD and MetaImage round trips, write_volume dispatch and atomic folder publication."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ctdenoise.errors import OutputError
from ctdenoise.io import DicomOutput, Volume, atomic_write_dir, read_volume, write_image, write_volume


def _oblique_volume() -> Volume:
    """A small volume with anisotropic spacing and a rotated, non-axis-aligned LPS geometry."""
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    spacing = (2.5, 0.7, 0.6)  # (slice, row, col)
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.array([spacing[2], spacing[1], spacing[0]])
    affine[:3, 3] = [-120.0, -95.5, 42.0]
    hu = np.random.default_rng(1).normal(0, 300, (5, 24, 32)).astype(np.float32)
    return Volume(hu=hu, spacing=spacing, affine=affine, source_path=Path("synthetic.nii.gz"),
                  source_format="nifti", dicom_datasets=None, description="synthetic")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".nhdr"])
def test_image_round_trip_keeps_voxels_spacing_and_affine(tmp_path, suffix):
    volume = _oblique_volume()
    path = write_image(volume, volume.hu, tmp_path / f"out{suffix}")
    again = read_volume(path)
    np.testing.assert_allclose(again.hu, volume.hu, atol=1e-4)
    np.testing.assert_allclose(again.affine, volume.affine, atol=1e-4)
    assert again.spacing == pytest.approx(volume.spacing, abs=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_nifti_on_disk_is_ras_and_keeps_the_source_header(tmp_path):
    source = tmp_path / "source.nii.gz"
    ras = np.diag([0.8, 0.8, 3.0, 1.0])
    ras[:3, 3] = [10.0, -20.0, 30.0]
    image = nib.Nifti1Image(np.zeros((6, 7, 4), np.int16), ras)
    image.header["descrip"] = b"scanner export"
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, source)
    volume = read_volume(source)
    assert volume.hu.shape == (4, 7, 6)
    np.testing.assert_allclose(volume.affine[:2], -ras[:2])  # LPS in memory
    out = write_image(volume, volume.hu + 1.5, tmp_path / "denoised.nii.gz")
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, ras, atol=1e-6)
    assert written.header["descrip"].tobytes().startswith(b"scanner export")
    assert written.get_fdata().dtype == np.float64 and np.allclose(written.get_fdata(), 1.5)


def test_dicom_volume_to_nifti_keeps_geometry(ct_small, tmp_path):
    volume = read_volume(ct_small)
    [path] = write_volume(volume, volume.hu, tmp_path / "ct_small", format="nifti")
    assert path.name == "ct_small.nii.gz"
    again = read_volume(path)
    np.testing.assert_allclose(again.affine, volume.affine, atol=1e-4)
    np.testing.assert_allclose(again.hu, volume.hu)


def test_write_volume_same_format(tmp_path, ct_small):
    volume = _oblique_volume()
    [path] = write_volume(volume, volume.hu, tmp_path / "result")
    assert path.name == "result.nii.gz"
    dicom = read_volume(ct_small)
    paths = write_volume(dicom, dicom.hu, tmp_path / "series", dicom=DicomOutput("x", "y"))
    assert [p.parent.name for p in paths] == ["series"]


def test_image_output_over_its_input_is_refused(tmp_path):
    volume = _oblique_volume()
    path = write_image(volume, volume.hu, tmp_path / "in.nii.gz")
    source = read_volume(path)
    with pytest.raises(OutputError, match="refusing to write over the input"):
        write_image(source, source.hu, path)
    with pytest.raises(OutputError, match="unknown image extension"):
        write_image(source, source.hu, tmp_path / "out.png")


def test_atomic_write_dir_publishes_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "series"
    with pytest.raises(RuntimeError):
        with atomic_write_dir(target) as staging:
            (staging / "a.dcm").write_bytes(b"1")
            raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []
    with atomic_write_dir(target) as staging:
        (staging / "a.dcm").write_bytes(b"1")
        assert not target.exists()
    assert [p.name for p in target.iterdir()] == ["a.dcm"]
    with pytest.raises(OutputError, match="not empty"):
        with atomic_write_dir(target):
            pass
    with atomic_write_dir(target, overwrite=True) as staging:
        (staging / "b.dcm").write_bytes(b"2")
    assert [p.name for p in target.iterdir()] == ["b.dcm"]
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
