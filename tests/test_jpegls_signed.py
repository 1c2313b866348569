"""Signed CT written with ``--compression jpeg-ls`` is encoded at 16 bits, as dcmcjpls and gdcmconv do: a viewer
that reads the JPEG-LS samples without sign extension (Orthanc 1.10's preview) then sees the right values;
at the source's 12 bits, air (-1000 HU) came out as +3096 and showed white."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import jpeg_ls
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames

from conftest import real_test_file
from ctdenoise.examples import build_series_from_slice
from ctdenoise.io import DicomOutput, read_volume, write_derived_dicom
from orthanc import Orthanc, orthanc_available


def write_signed_12_bit(tmp_path: Path, slices: int) -> dict[str, list[Path]]:
    """A signed 12-bit CT series (as many scanners write; its lowest stored values are negative) with air in a
    corner, derived uncompressed and in JPEG-LS."""
    folder = build_series_from_slice(real_test_file("CT_small.dcm"), tmp_path / "src", [5.0 * k for k in range(slices)],
                                     None)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = np.clip(ds.pixel_array, -2048, 2047).astype(np.int16).tobytes()
        ds.save_as(path)
    volume = read_volume(folder)
    hu = volume.hu.copy()
    hu[:, :32, :32] = -1000.0  # air: negative stored values
    return {name: write_derived_dicom(volume, hu, tmp_path / name, DicomOutput("t", "t", compression=name)) for name in ("none", "jpeg-ls")}


def test_signed_12_bit_ct_is_jpeg_ls_encoded_so_raw_samples_read_as_int16_are_right(tmp_path):
    files = write_signed_12_bit(tmp_path, 2)
    for a, b in zip(files["none"], files["jpeg-ls"]):
        reference, compressed = pydicom.dcmread(a), pydicom.dcmread(b)
        stored = reference.pixel_array
        assert stored.min() < 0 and reference.BitsStored == 12
        assert (compressed.BitsStored, compressed.HighBit, compressed.PixelRepresentation) == (16, 15, 1)
        np.testing.assert_array_equal(compressed.pixel_array, stored)
        raw = np.asarray(jpeg_ls.decode(np.frombuffer(next(generate_frames(compressed.PixelData)), np.uint8)))
        np.testing.assert_array_equal(raw.astype(np.uint16).view(np.int16), stored)  # no sign extension needed


def _preview(pacs: Orthanc, path: Path) -> np.ndarray:
    """Orthanc's rendered preview (8-bit greyscale) of the file ``path`` after uploading it."""
    request = urllib.request.Request(f"{pacs.url}/instances", data=path.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        instance = json.loads(response.read())["ID"]
    with urllib.request.urlopen(f"{pacs.url}/instances/{instance}/preview", timeout=60) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("L"))


@pytest.mark.skipif(not orthanc_available(), reason="needs the Debian packages orthanc and orthanc-dicomweb")
def test_orthanc_previews_signed_jpeg_ls_output_like_the_uncompressed_one(tmp_path):
    files = write_signed_12_bit(tmp_path, 1)
    with Orthanc(tmp_path / "orthanc") as pacs:
        plain, packed = (_preview(pacs, files[name][0]) for name in ("none", "jpeg-ls"))
    assert plain.std() > 10  # an image, not a blank
    np.testing.assert_allclose(packed.astype(float), plain.astype(float), atol=1)
