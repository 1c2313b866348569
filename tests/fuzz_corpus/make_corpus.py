"""Rebuild the fuzz seed corpus from pydicom's and pydicom-data's real CT files (run from the repo root).

    python tests/fuzz_corpus/make_corpus.py

Every seed is a real CT file or derived from one by a documented, deterministic step; the
corpus stays far below 1 MB so it can live in the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

HERE = Path(__file__).resolve().parent


def real(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        raise SystemExit(f"{name} not found: install pydicom-data")
    return Path(path)


def enhanced_crop(size: int = 32) -> pydicom.Dataset:
    """eCT_Supplemental.dcm (2-frame Enhanced CT, 512x512) cropped to its central size x size pixels."""
    ds = pydicom.dcmread(real("eCT_Supplemental.dcm"))
    frames = ds.pixel_array
    start = (frames.shape[1] - size) // 2
    crop = np.ascontiguousarray(frames[:, start:start + size, start:start + size])
    ds.Rows = ds.Columns = size
    ds.PixelData = crop.tobytes()
    return ds


def main() -> None:
    shutil.copyfile(real("CT_small.dcm"), HERE / "ct_small.dcm")
    shutil.copyfile(real("693_J2KI.dcm"), HERE / "ct_512_jpeg2000.dcm")
    shutil.copyfile(real("17106"), HERE / "ct_16x16.dcm")
    rle = pydicom.dcmread(real("CT_small.dcm"))
    rle.compress(RLELossless)
    rle.save_as(HERE / "ct_small_rle.dcm")
    enhanced_crop().save_as(HERE / "enhanced_ct_32x32.dcm")
    hu = (np.arange(8 * 8 * 3, dtype=np.int16).reshape(8, 8, 3) * 10)
    image = nib.Nifti1Image(hu, np.diag([-0.7, -0.7, 2.0, 1.0]))
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, HERE / "tiny_8x8x3.nii")


if __name__ == "__main__":
    main()
