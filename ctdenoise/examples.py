"""The shipped example: a small multi-slice CT series built from a real CT slice.

pydicom ships one real CT slice, ``CT_small.dcm`` (128x128, 16-bit signed). :func:`build_series_from_slice`
copies a slice along its slice normal into a series (new Series/SOP Instance UIDs, shifted
ImagePositionPatient, distinguishable pixel values) so the tools have a real-looking series to work on.
The result is a *built* series: every slice is the same real image, offset by a few stored units.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from ctdenoise.errors import InputError
from ctdenoise.io.uids import new_uid

EXAMPLE_SOURCE = "CT_small.dcm"
EXAMPLE_POSITIONS_MM = (0.0, 5.0, 10.0, 15.0)
EXAMPLE_DESCRIPTION = "ctdenoise example (built from pydicom CT_small)"


def build_series_from_slice(
    source: Path | str,
    dest: Path | str,
    positions_mm: Sequence[float],
    instance_numbers: Sequence[int] | None = None,
    value_step: int = 10,
    series_description: str | None = None,
) -> Path:
    """Write one DICOM file per position into the new folder ``dest`` and return ``dest``.

    Copy ``k`` is moved ``positions_mm[k]`` along the source's slice normal (ImagePositionPatient, and
    SliceLocation when the source has one, by the same distance), gets a new SOPInstanceUID
    (all copies share one new SeriesInstanceUID), InstanceNumber ``instance_numbers[k]`` (default k+1),
    and ``value_step * k`` added to its stored values (padding voxels excepted). Files are named
    ``slice000.dcm``, ... in the order given, so names need not follow positions.
    """
    template = pydicom.dcmread(source)
    folder = Path(dest)
    folder.mkdir(parents=True)
    series_uid = new_uid()
    orientation = np.asarray(template.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.asarray(template.ImagePositionPatient, dtype=float)
    stored = template.pixel_array
    padding = template.get("PixelPaddingValue")
    for k, along in enumerate(positions_mm):
        ds = copy.deepcopy(template)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = new_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + normal * float(along)]
        if "SliceLocation" in template:  # it follows the position: the source's value moved the same distance
            ds.SliceLocation = f"{float(template.SliceLocation) + float(along):.4f}"
        ds.InstanceNumber = instance_numbers[k] if instance_numbers is not None else k + 1
        if series_description is not None:
            ds.SeriesDescription = series_description
        offset = value_step * k
        shifted = stored + offset if padding is None else np.where(stored == int(padding), stored, stored + offset)
        ds.PixelData = shifted.astype(stored.dtype).tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm")
    return folder


def write_example_series(dest: Path | str) -> Path:
    """Build the shipped example series (4 slices, 5 mm apart, from pydicom's CT_small.dcm) in ``dest``."""
    source = get_testdata_file(EXAMPLE_SOURCE)
    if not isinstance(source, str):  # it ships inside pydicom: only a broken install lacks it
        raise InputError(EXAMPLE_SOURCE, "pydicom's test file is missing; reinstall pydicom")
    return build_series_from_slice(
        source,
        dest,
        EXAMPLE_POSITIONS_MM,
        series_description=EXAMPLE_DESCRIPTION,
    )
