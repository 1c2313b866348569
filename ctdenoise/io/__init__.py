"""CT volume input/output: DICOM series discovery and reading, NIfTI/NRRD/MetaImage, derived DICOM write-back.

Everything returns or takes a :class:`Volume` (float32 HU, shape (slices, rows, cols), LPS affine).
"""

from ctdenoise.io.atomic import atomic_write_dir
from ctdenoise.io.dicom_pixels import PADDING_HU
from ctdenoise.io.dicom_write import DicomOutput, write_derived_dicom
from ctdenoise.io.discover import SeriesRef, find_series
from ctdenoise.io.read import DEFAULT_MAX_VOXELS, read_volume
from ctdenoise.io.volume import Volume
from ctdenoise.io.write import write_image, write_volume

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "DicomOutput",
    "PADDING_HU",
    "SeriesRef",
    "Volume",
    "atomic_write_dir",
    "find_series",
    "read_volume",
    "write_derived_dicom",
    "write_image",
    "write_volume",
]
