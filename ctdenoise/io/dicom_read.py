"""Reading classic CT series (one file per slice) and Enhanced CT files into a Volume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ctdenoise.errors import MixedSeriesError, PixelDataError, SliceGeometryError
from ctdenoise.io.dicom_headers import (
    check_header,
    check_size,
    declared_voxels,
    describe,
    header_number,
    is_enhanced_ct,
    read_dicom,
)
from ctdenoise.io.dicom_pixels import PADDING_HU, decode_stored, padding_mask, to_hu
from ctdenoise.io.geometry import Plane, declared_steps, plane_from_values, stack_planes
from ctdenoise.io.pool import map_files
from ctdenoise.io.volume import Volume

DEFAULT_SLICE_SPACING_MM = 1.0
"""Spacing along the normal for a single slice that declares neither SpacingBetweenSlices nor SliceThickness."""


def _single_slice_spacing(ds: Dataset, path: Path) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = header_number(ds, keyword, path, 0.0)
        if value > 0:
            return value
    return DEFAULT_SLICE_SPACING_MM


def _rescale(item: Dataset, path: Path | None) -> tuple[float, float]:
    slope = header_number(item, "RescaleSlope", path, 1.0) or 1.0
    return slope, header_number(item, "RescaleIntercept", path, 0.0)


def _apply_padding(hu: np.ndarray, mask: np.ndarray | None) -> None:
    if mask is not None:
        hu[mask] = PADDING_HU


def _read_header(path: Path) -> Dataset:
    return read_dicom(path, header_only=True)


def _decoder_crashed(path: Path, how: str) -> PixelDataError:
    """The error for a file whose decoding killed the (isolated) process that decoded it."""
    return PixelDataError(path, f"the pixel decoder crashed ({how}) on this file; it was decoding in a worker "
                                "process of its own, so only this series fails")


def _decode_slice(path: Path) -> tuple[np.ndarray, np.ndarray | None, Dataset]:
    """One classic slice: its HU (float32, padding set to PADDING_HU), its padding mask (or None) and its
    dataset without pixel data."""
    ds = read_dicom(path, header_only=False)
    stored = decode_stored(ds, path)[0]
    hu = to_hu(stored, *_rescale(ds, path), path)
    mask = padding_mask(ds, stored)
    _apply_padding(hu, mask)
    del ds.PixelData
    return hu, mask, ds


def read_classic_series(
    paths: Sequence[Path], source_path: Path, *, max_voxels: int, workers: int | None = None
) -> Volume:
    """Read single-frame CT files of one series, sorted along the slice normal, into a Volume.

    All headers are checked (CT, decodable, same series, same size, regular geometry, total size
    under ``max_voxels``) before any pixel data is read. Pixel data is dropped from the kept datasets.

    Files are parsed by ``workers`` processes (:func:`ctdenoise.io.pool.map_files`; None: one per
    available core, 1: in this thread) and always decoded in worker processes (isolated: a decoder that
    aborts the process costs this series a PixelDataError naming the file, not the caller its life); the
    Volume, the errors and the warnings are the same for every ``workers``, and at most two slices per
    worker are held beyond the Volume's own arrays.
    """
    headers = list(map_files(_read_header, paths, count=len(paths), workers=workers))
    for ds, path in zip(headers, paths):
        check_header(ds, path)
        if is_enhanced_ct(ds):
            raise MixedSeriesError(path, "an Enhanced CT file among single-frame slices; read it on its own")
    uids = {str(ds.get("SeriesInstanceUID", "")) for ds in headers}
    if len(uids) > 1:
        raise MixedSeriesError(source_path, f"{len(uids)} different SeriesInstanceUIDs among {len(paths)} files")
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in headers}
    if len(sizes) > 1:
        raise SliceGeometryError(source_path, f"slices of different sizes (rows, cols) in one series: {sorted(sizes)}")
    check_size(sum(declared_voxels(ds) for ds in headers), max_voxels, source_path)

    planes = [
        plane_from_values(ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"), ds.get("PixelSpacing"),
                          path.name, source_path)
        for ds, path in zip(headers, paths)
    ]
    order, affine, spacing = stack_planes(planes, source_path, _single_slice_spacing(headers[0], paths[0]))

    rows, cols = sizes.pop()
    hu = np.empty((len(paths), rows, cols), dtype=np.float32)
    mask: np.ndarray | None = None  # made at the first slice with padding: most series have none
    datasets: list[Dataset] = []
    decoded = map_files(_decode_slice, [paths[index] for index in order], count=len(order), workers=workers,
                        crash_error=_decoder_crashed)
    for k, (slice_hu, slice_mask, ds) in enumerate(decoded):
        hu[k] = slice_hu
        if slice_mask is not None:
            if mask is None:
                mask = np.zeros(hu.shape, dtype=bool)
            mask[k] = slice_mask
        datasets.append(ds)
    return Volume(
        hu=hu,
        spacing=spacing,
        affine=affine,
        source_path=source_path,
        source_format="dicom",
        slice_steps=declared_steps(planes, order),
        dicom_datasets=datasets,
        description=describe(headers[0], source_path),
        padding_mask=mask,
    )


def _functional_group(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The item of a functional-group macro for one frame: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for group in ([per_frame[frame]] if frame < len(per_frame) else []) + list(shared[:1]):
        items = group.get(sequence)
        if items:
            return items[0]
    return None


def enhanced_planes(ds: Dataset, path: Path) -> list[Plane]:
    """Per-frame geometry of an Enhanced CT dataset from its functional groups."""
    planes = []
    for frame in range(int(ds.get("NumberOfFrames", 1) or 1)):
        position = _functional_group(ds, frame, "PlanePositionSequence")
        orientation = _functional_group(ds, frame, "PlaneOrientationSequence")
        measures = _functional_group(ds, frame, "PixelMeasuresSequence")
        planes.append(plane_from_values(
            position.get("ImagePositionPatient") if position else None,
            orientation.get("ImageOrientationPatient") if orientation else None,
            measures.get("PixelSpacing") if measures else None,
            f"frame {frame + 1}",
            path,
        ))
    return planes


def enhanced_frame_rescale(ds: Dataset, frame: int, path: Path | None = None) -> tuple[float, float]:
    """(slope, intercept) of one frame: PixelValueTransformationSequence, else top-level attributes.

    PixelDataError (naming ``path``) when a value is not a finite number.
    """
    item = _functional_group(ds, frame, "PixelValueTransformationSequence")
    return _rescale(item if item is not None else ds, path)


def enhanced_frame_order(ds: Dataset, path: Path) -> np.ndarray:
    """Source frame index of each slice of the Volume read from this Enhanced CT dataset."""
    order, _, _ = stack_planes(enhanced_planes(ds, path), path, _enhanced_slice_spacing(ds, path))
    return order


def _enhanced_slice_spacing(ds: Dataset, path: Path) -> float:
    measures = _functional_group(ds, 0, "PixelMeasuresSequence")
    return _single_slice_spacing(measures if measures is not None else ds, path)


def _decode_frames(path: Path) -> tuple[np.ndarray, Dataset]:
    """An Enhanced CT file's stored values (frames, rows, cols) and its dataset without pixel data."""
    ds = read_dicom(path, header_only=False)
    stored = decode_stored(ds, path)
    del ds.PixelData
    return stored, ds


def read_enhanced(path: Path, *, max_voxels: int) -> Volume:
    """Read one Enhanced (multi-frame) CT file, frames sorted along the slice normal, into a Volume.

    The pixel data is decoded in a worker process (isolated, as in :func:`read_classic_series`)."""
    header = read_dicom(path, header_only=True)
    check_header(header, path)
    check_size(declared_voxels(header), max_voxels, path)
    planes = enhanced_planes(header, path)
    order, affine, spacing = stack_planes(planes, path, _enhanced_slice_spacing(header, path))

    stored, ds = next(map_files(_decode_frames, [path], count=1, workers=1, crash_error=_decoder_crashed))
    hu = np.empty(stored.shape, dtype=np.float32)
    for k, frame in enumerate(order):
        hu[k] = to_hu(stored[frame], *enhanced_frame_rescale(ds, int(frame), path), path)
    mask = padding_mask(ds, stored)
    if mask is not None:
        mask = mask[order]
        _apply_padding(hu, mask)
    return Volume(
        hu=hu,
        spacing=spacing,
        affine=affine,
        source_path=path,
        source_format="dicom-enhanced",
        slice_steps=declared_steps(planes, order),
        dicom_datasets=[ds],
        description=describe(ds, path),
        padding_mask=mask,
    )
