"""Lossless compression of derived DICOM (--compression): the same stored values as uncompressed output,
the transfer syntax asked for, and no dciodvfy error the uncompressed output lacks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders.base import get_decoder

from conftest import real_test_file
from ctdenoise.cli import main
from ctdenoise.errors import OutputError
from ctdenoise.io import DicomOutput, read_volume, write_derived_dicom
from ctdenoise.io.dicom_write import COMPRESSION_SYNTAXES

LOSSLESS = [name for name in COMPRESSION_SYNTAXES if name != "none"]
DCIODVFY = shutil.which("dciodvfy")


def _write(volume, hu, out: Path, compression: str) -> list[Path]:
    return write_derived_dicom(volume, hu, out, DicomOutput("ctdenoise test", "compression test", compression=compression))


def _hu_with_negative_stored_values(volume) -> np.ndarray:
    """Noisy HU with a block far below the intercept, so signed sources get negative stored values."""
    hu = volume.hu + np.random.default_rng(0).normal(0, 25, volume.hu.shape).astype(np.float32)
    hu[:, :16, :16] = -1800.0
    return hu


@pytest.mark.parametrize("compression", LOSSLESS)
def test_compressed_output_decodes_to_exactly_the_uncompressed_stored_values(build_series, tmp_path, compression):
    volume = read_volume(build_series([0.0, 5.0], source="CT_small.dcm"))  # signed 16-bit
    hu = _hu_with_negative_stored_values(volume)
    plain = _write(volume, hu, tmp_path / "plain", "none")
    packed = _write(volume, hu, tmp_path / compression, compression)
    for a, b in zip(plain, packed):
        reference, compressed = pydicom.dcmread(a), pydicom.dcmread(b)
        assert compressed.file_meta.TransferSyntaxUID == COMPRESSION_SYNTAXES[compression]
        assert compressed["PixelData"].is_undefined_length  # encapsulated
        assert reference.pixel_array.min() < 0
        np.testing.assert_array_equal(compressed.pixel_array, reference.pixel_array)
        assert compressed.SOPInstanceUID == compressed.file_meta.MediaStorageSOPInstanceUID
        assert "LossyImageCompression" not in compressed or compressed.LossyImageCompression == "00"
    assert sum(p.stat().st_size for p in packed) < sum(p.stat().st_size for p in plain)


@pytest.mark.parametrize("compression", LOSSLESS)
def test_every_installed_decoder_and_simpleitk_read_the_same_values(build_series, tmp_path, compression):
    """Third-party decoders (GDCM, pylibjpeg, pyjpegls, Pillow; SimpleITK through GDCM) agree exactly."""
    volume = read_volume(build_series([0.0], source="CT_small.dcm"))
    hu = _hu_with_negative_stored_values(volume)
    [plain] = _write(volume, hu, tmp_path / "plain", "none")
    [packed] = _write(volume, hu, tmp_path / compression, compression)
    reference = pydicom.dcmread(plain)
    plugins = list(get_decoder(COMPRESSION_SYNTAXES[compression]).available_plugins)
    assert len(plugins) >= 2
    for plugin in plugins:
        np.testing.assert_array_equal(pixel_array(str(packed), decoding_plugin=plugin), reference.pixel_array)
    itk_hu = sitk.GetArrayFromImage(sitk.ReadImage(str(packed)))[0]
    expected_hu = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    np.testing.assert_array_equal(itk_hu, expected_hu)


@pytest.mark.parametrize("compression", LOSSLESS)
def test_enhanced_ct_multiframe_compresses_losslessly(tmp_path, compression):
    volume = read_volume(real_test_file("eCT_Supplemental.dcm"))
    hu = volume.hu + 3.0
    [plain] = _write(volume, hu, tmp_path / "plain", "none")
    [packed] = _write(volume, hu, tmp_path / compression, compression)
    reference, compressed = pydicom.dcmread(plain), pydicom.dcmread(packed)
    assert compressed.file_meta.TransferSyntaxUID == COMPRESSION_SYNTAXES[compression]
    np.testing.assert_array_equal(compressed.pixel_array, reference.pixel_array)


def test_unknown_compression_is_refused_before_writing(build_series, tmp_path):
    volume = read_volume(build_series([0.0], source="CT_small.dcm"))
    with pytest.raises(OutputError, match="unknown compression 'jpeg'"):
        _write(volume, volume.hu, tmp_path / "out", "jpeg")
    assert not (tmp_path / "out").exists()


def test_cli_compression_option_writes_the_series_in_that_syntax(build_series, tiny_checkpoint, tmp_path):
    series = build_series([0.0, 5.0], source="CT_small.dcm")
    out = tmp_path / "out"
    assert main(["denoise", str(series), "-o", str(out), "--model", str(tiny_checkpoint), "--device", "cpu",
                 "--compression", "jpeg-ls"]) == 0
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == 2
    assert {pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in files} == {pydicom.uid.JPEGLSLossless}


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return {line.strip() for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it")
@pytest.mark.parametrize("compression", LOSSLESS)
@pytest.mark.parametrize("source", ["CT_small.dcm", "eCT_Supplemental.dcm"])  # classic and Enhanced CT
def test_compressed_output_has_no_dciodvfy_error_the_uncompressed_one_lacks(tmp_path, compression, source):
    volume = read_volume(real_test_file(source))
    [plain] = _write(volume, volume.hu, tmp_path / "plain", "none")
    [packed] = _write(volume, volume.hu, tmp_path / compression, compression)
    assert _dciodvfy_errors(packed) - _dciodvfy_errors(plain) == set()
