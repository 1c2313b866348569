"""Slice geometry: sorting planes along the slice normal and checking they form a regular volume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctdenoise.errors import SliceGeometryError, quoted
from ctdenoise.io.volume import Volume, affine_from_axes

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between direction cosines of slices that still counts as the same orientation."""
SPACING_TOLERANCE = 1e-3
"""Largest relative difference between PixelSpacing values that still counts as the same spacing."""
DUPLICATE_TOLERANCE_MM = 1e-3
"""Two slices closer than this along the normal are duplicates."""
GAP_FACTOR = 1.5
"""A step larger than GAP_FACTOR x the median step means slices are missing."""
EVEN_SLICES_TOLERANCE_MM = 0.1
"""Largest distance between a slice's declared position and its place on an evenly spaced grid that still
counts as evenly spaced (as :data:`ctdenoise.io.image_files.NIFTI_POSITION_TOLERANCE_MM` for NIfTI's transforms)."""


@dataclass(frozen=True)
class Plane:
    """Geometry of one slice/frame: where it is, how it is oriented, its pixel size, and a name for messages."""

    position: np.ndarray  # ImagePositionPatient (3,)
    orientation: np.ndarray  # ImageOrientationPatient (6,): row direction, then column direction
    pixel_spacing: np.ndarray  # PixelSpacing (2,): row spacing, column spacing
    name: str


def plane_from_values(position, orientation, pixel_spacing, name: str, path: Path) -> Plane:
    """Build a Plane from DICOM attribute values; SliceGeometryError when one is missing or malformed."""
    for keyword, value, size in (
        ("ImagePositionPatient", position, 3),
        ("ImageOrientationPatient", orientation, 6),
        ("PixelSpacing", pixel_spacing, 2),
    ):
        if value is None or isinstance(value, (str, bytes)) or len(value) != size:
            raise SliceGeometryError(path, f"{name}: {keyword} is missing or malformed ({quoted(value)})")
    spacing = _finite_numbers(pixel_spacing, "PixelSpacing", name, path)
    if np.any(spacing <= 0):
        raise SliceGeometryError(path, f"{name}: PixelSpacing must be positive, got {_values(spacing)}")
    return Plane(
        position=_finite_numbers(position, "ImagePositionPatient", name, path),
        orientation=_finite_numbers(orientation, "ImageOrientationPatient", name, path),
        pixel_spacing=spacing,
        name=name,
    )


def _finite_numbers(values, keyword: str, name: str, path: Path) -> np.ndarray:
    """The values as float64; SliceGeometryError for text that is no number, NaN or infinity."""
    try:
        numbers = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise SliceGeometryError(path, f"{name}: {keyword} holds a value that is not a number ({quoted(values)})") from None
    if not np.all(np.isfinite(numbers)):
        raise SliceGeometryError(path, f"{name}: {keyword} must be finite, got {_values(numbers)}")
    return numbers


def _values(array: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in array) + "]"


def _check_consistent(planes: list[Plane], path: Path) -> None:
    first = planes[0]
    for plane in planes[1:]:
        if np.max(np.abs(plane.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise SliceGeometryError(
                path,
                f"inconsistent ImageOrientationPatient within the series: {first.name} has "
                f"{_values(first.orientation)}, {plane.name} has {_values(plane.orientation)}",
            )
        if np.max(np.abs(plane.pixel_spacing / first.pixel_spacing - 1.0)) > SPACING_TOLERANCE:
            raise SliceGeometryError(
                path,
                f"inconsistent PixelSpacing within the series: {first.name} has {_values(first.pixel_spacing)}, "
                f"{plane.name} has {_values(plane.pixel_spacing)}",
            )


def stack_planes(
    planes: list[Plane], path: Path, single_slice_spacing: float
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Sort planes by position along the slice normal and check they form a regular stack.

    Returns ``(order, affine, spacing)``: ``order[k]`` is the index into ``planes`` of slice ``k``
    (ascending along the normal row x column), the LPS affine of the sorted stack (see
    :mod:`ctdenoise.io.volume`), and the (slice, row, col) spacing. A single plane gets
    ``single_slice_spacing`` along the normal. Raises SliceGeometryError for inconsistent
    orientation or pixel spacing, duplicated positions, or a gap over GAP_FACTOR x the median step.
    """
    _check_consistent(planes, path)
    first = planes[0]
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    norm = np.linalg.norm(normal)
    if norm < 0.5:
        raise SliceGeometryError(path, f"ImageOrientationPatient {_values(first.orientation)} is degenerate")
    normal = normal / norm
    along = np.asarray([p.position @ normal for p in planes])
    order = np.argsort(along, kind="stable")
    row_spacing, col_spacing = (float(v) for v in first.pixel_spacing)
    if len(planes) == 1:
        slice_spacing = float(single_slice_spacing)
        slice_axis = normal * slice_spacing
    else:
        steps = np.diff(along[order])
        for index in np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM):
            a, b = planes[order[index]], planes[order[index + 1]]
            raise SliceGeometryError(
                path, f"duplicated slice position {along[order[index]]:.3f} mm along the normal: {a.name} and {b.name}"
            )
        slice_spacing = float(np.median(steps))
        gaps = np.flatnonzero(steps > GAP_FACTOR * slice_spacing)
        if gaps.size:
            index = gaps[0]
            raise SliceGeometryError(
                path,
                f"missing slices: gap of {steps[index]:.3f} mm between {planes[order[index]].name} and "
                f"{planes[order[index + 1]].name}, median spacing {slice_spacing:.3f} mm "
                f"(limit {GAP_FACTOR} x median)",
            )
        slice_axis = (planes[order[-1]].position - planes[order[0]].position) / (len(planes) - 1)
    affine = affine_from_axes(planes[order[0]].position, row_dir * col_spacing, col_dir * row_spacing, slice_axis)
    return order, affine, (slice_spacing, row_spacing, col_spacing)


def declared_steps(planes: list[Plane], order: np.ndarray) -> np.ndarray:
    """Distances (mm) between neighbouring planes, in the ``order`` of :func:`stack_planes`."""
    positions = np.stack([planes[index].position for index in order])
    return np.linalg.norm(np.diff(positions, axis=0), axis=1)


def uneven_slices(volume: Volume) -> str | None:
    """None when ``volume``'s slices are evenly spaced (every slice within :data:`EVEN_SLICES_TOLERANCE_MM` of
    its place on the grid of one step from the first to the last slice), else what is wrong, naming the
    smallest and the largest step: formats with one slice step (NIfTI, NRRD, MetaImage) would place slices
    where they were not scanned. A volume without ``slice_steps`` is evenly spaced by definition."""
    steps = volume.slice_steps
    if steps is None or len(steps) < 2:
        return None
    along = np.concatenate([[0.0], np.cumsum(steps)])
    step = along[-1] / len(steps)
    errors = np.abs(along - step * np.arange(len(along)))
    worst = int(np.argmax(errors))
    if errors[worst] <= EVEN_SLICES_TOLERANCE_MM:
        return None
    small, large = int(np.argmin(steps)), int(np.argmax(steps))
    return (f"slices are not evenly spaced: {steps[small]:.3f} mm between slices {small + 1} and {small + 2}, "
            f"{steps[large]:.3f} mm between slices {large + 1} and {large + 2} (of {len(along)}); with one step "
            f"of {step:.3f} mm for all, slice {worst + 1} would lie {errors[worst]:.3f} mm from where it was scanned")
