"""The one in-memory image type of ctdenoise: a CT volume in Hounsfield units plus its geometry.

Geometry convention (the same for every source format):

* ``hu[k, j, i]`` is slice ``k``, row ``j``, column ``i``.
* ``affine`` maps the homogeneous voxel index ``(i, j, k, 1)`` = (column, row, slice, 1) to
  patient coordinates in millimetres in the DICOM **LPS** system (x to the patient's left,
  y to posterior, z to superior). NIfTI files store RAS; they are converted to LPS on reading
  and back to RAS on writing, so ``affine`` never depends on where a volume came from.
* ``spacing`` is in millimetres along the axes of ``hu``: (slice, row, column).
* ``origin`` is the LPS position of the centre of voxel ``hu[0, 0, 0]``; ``direction`` is the
  3x3 matrix whose columns are the unit vectors of the column, row and slice axes
  (``affine[:3, :3] == direction * [col_spacing, row_spacing, slice_spacing]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SOURCE_FORMATS = ("dicom", "dicom-enhanced", "nifti", "itk")


@dataclass
class Volume:
    """A CT volume: float32 HU voxels, geometry, and what is needed to write a derived copy.

    ``dicom_datasets`` holds the source pydicom Datasets (pixel data removed) in the order of
    the slices of ``hu`` for classic CT, or the single multi-frame Dataset of an Enhanced CT file.
    ``padding_mask`` marks voxels that held the source's PixelPaddingValue (their HU is set to
    :data:`ctdenoise.io.dicom_pixels.PADDING_HU`); derived DICOM writes them back as padding.
    ``slice_steps`` (slices - 1,): the distance in mm between slice ``k`` and ``k + 1`` as the source declared
    their positions (DICOM; None for sources whose affine is the only geometry). The affine has one slice step
    for all; where the source's steps differ, :func:`ctdenoise.io.geometry.uneven_slices` says by how much.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source_path: Path
    source_format: str
    dicom_datasets: list | None
    description: str
    padding_mask: np.ndarray | None = field(default=None, repr=False)
    slice_steps: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"Volume.hu must be 3-D (slices, rows, cols), got shape {self.hu.shape}")
        if self.hu.dtype != np.float32:
            self.hu = self.hu.astype(np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume.affine must be 4x4, got {self.affine.shape}")
        if self.source_format not in SOURCE_FORMATS:
            raise ValueError(f"Volume.source_format must be one of {SOURCE_FORMATS}, got {self.source_format!r}")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.source_path = Path(self.source_path)
        if self.slice_steps is not None:
            self.slice_steps = np.asarray(self.slice_steps, dtype=np.float64)
            if self.slice_steps.shape != (self.hu.shape[0] - 1,):
                raise ValueError(f"Volume.slice_steps must have {self.hu.shape[0] - 1} values (one per pair of "
                                 f"neighbouring slices), got shape {self.slice_steps.shape}")

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of the centre of voxel ``hu[0, 0, 0]``."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix of unit column vectors: column, row and slice axis directions in LPS."""
        axes = self.affine[:3, :3]
        return axes / np.linalg.norm(axes, axis=0, keepdims=True)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, cols)."""
        return tuple(self.hu.shape)

    def with_hu(self, hu: np.ndarray) -> Volume:
        """Return a Volume with the same geometry and sources and new voxels (same shape required)."""
        hu = np.asarray(hu)
        if hu.shape != self.hu.shape:
            raise ValueError(f"new HU array has shape {hu.shape}, the volume has {self.hu.shape}")
        return replace(self, hu=hu.astype(np.float32, copy=False))


def affine_from_axes(
    origin: np.ndarray, col_axis: np.ndarray, row_axis: np.ndarray, slice_axis: np.ndarray
) -> np.ndarray:
    """Build the 4x4 voxel-to-LPS affine from the origin and the three per-voxel step vectors (mm)."""
    affine = np.eye(4)
    affine[:3, 0] = col_axis
    affine[:3, 1] = row_axis
    affine[:3, 2] = slice_axis
    affine[:3, 3] = origin
    return affine


# Flip between DICOM/ITK LPS and NIfTI RAS (x and y change sign); it is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
