"""``read_volume``: one entry point that turns a file, a folder or a SeriesRef into a Volume."""

from __future__ import annotations

from pathlib import Path

from ctdenoise.errors import InputError, MixedSeriesError
from ctdenoise.io.dicom_headers import is_enhanced_ct, read_dicom
from ctdenoise.io.dicom_read import read_classic_series, read_enhanced
from ctdenoise.io.discover import SeriesRef, find_series
from ctdenoise.io.image_files import image_kind, read_itk, read_nifti
from ctdenoise.io.volume import Volume

DEFAULT_MAX_VOXELS = 2_000_000_000
"""Largest declared voxel count read by default (8 GB of float32): a guard against decompression bombs."""


def _read_ref(ref: SeriesRef, source_path: Path, max_voxels: int, workers: int | None) -> Volume:
    if ref.kind == "nifti":
        return read_nifti(ref.paths[0], max_voxels=max_voxels)
    if ref.kind == "itk":
        return read_itk(ref.paths[0], max_voxels=max_voxels)
    if ref.kind == "dicom-enhanced":
        return read_enhanced(ref.paths[0], max_voxels=max_voxels)
    if ref.kind == "dicom":
        return read_classic_series(list(ref.paths), source_path, max_voxels=max_voxels, workers=workers)
    raise InputError(source_path, f"unknown series kind {ref.kind!r}")


def read_volume(
    source: Path | str | SeriesRef, *, max_voxels: int = DEFAULT_MAX_VOXELS, workers: int | None = None
) -> Volume:
    """Read a CT volume in HU from a file, a folder holding exactly one series, or a SeriesRef.

    Files: DICOM (classic CT slice or Enhanced CT), NIfTI, NRRD, MetaImage. Folders are scanned
    with :func:`find_series`; more than one series raises MixedSeriesError naming their keys.
    Errors (all :class:`ctdenoise.errors.InputError` subclasses, path first in the message):
    NotDicomError, NotCTError, EmptyInputError, MixedSeriesError, SliceGeometryError,
    PixelDataError, UnsupportedTransferSyntaxError, ImageTooLargeError.
    ``workers``: processes that parse and decode a classic series' files (None: one per available
    core; 1: in this thread); the result and the errors do not depend on it
    (:func:`~ctdenoise.io.dicom_read.read_classic_series`).
    """
    if isinstance(source, SeriesRef):
        folder = source.paths[0].parent if len(source.paths) > 1 else source.paths[0]
        return _read_ref(source, folder, max_voxels, workers)
    path = Path(source)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        refs = find_series(path)
        if len(refs) != 1:
            keys = ", ".join(ref.key for ref in refs)
            raise MixedSeriesError(path, f"holds {len(refs)} series ({keys}); pick one with find_series()")
        return _read_ref(refs[0], path, max_voxels, workers)
    kind = image_kind(path)
    if kind is not None:
        return _read_ref(SeriesRef((path,), None, kind, path.name), path, max_voxels, workers)
    header = read_dicom(path, header_only=True)
    if is_enhanced_ct(header):
        return read_enhanced(path, max_voxels=max_voxels)
    return read_classic_series([path], path, max_voxels=max_voxels, workers=workers)
