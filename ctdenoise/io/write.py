"""``write_image`` and ``write_volume``: HU volumes to NIfTI/NRRD/MetaImage or a derived DICOM series."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ctdenoise.errors import OutputError
from ctdenoise.io.atomic import atomic_write_files, refuse_inputs
from ctdenoise.io.dicom_write import DicomOutput, write_derived_dicom
from ctdenoise.io.image_files import (
    check_even_slices,
    check_nifti_geometry,
    image_kind,
    image_suffix,
    save_itk,
    save_nifti,
)
from ctdenoise.io.volume import Volume

WRITE_FORMATS = ("same", "dicom", "nifti", "nrrd", "mha")
_FILE_FORMAT_SUFFIXES = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha"}


def _inputs(volume: Volume) -> list[Path]:
    paths = [volume.source_path]
    paths += [Path(ds.filename) for ds in volume.dicom_datasets or [] if getattr(ds, "filename", None)]
    return paths


def write_image(volume: Volume, hu: np.ndarray, path: Path) -> Path:
    """Write ``hu`` with ``volume``'s geometry as NIfTI (.nii, .nii.gz) or NRRD/MetaImage (.nrrd, .nhdr, .mha, .mhd).

    NIfTI uses nibabel and keeps the source header when the source was NIfTI; the others use
    SimpleITK. The file appears atomically; OutputError for another extension, a shape
    mismatch, a path that is one of the inputs, or a NIfTI path for a volume whose geometry NIfTI
    cannot hold exactly (:func:`~ctdenoise.io.image_files.check_nifti_geometry`: sheared axes, e.g. a
    tilted gantry; NRRD and MetaImage hold them), or any of these formats for a volume whose slices are not
    evenly spaced (:func:`~ctdenoise.io.image_files.check_even_slices`; DICOM holds them). Returns ``path``.
    """
    path = Path(path)
    kind = image_kind(path)
    if kind is None:
        raise OutputError(path, "unknown image extension (use .nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd)")
    if np.shape(hu) != volume.hu.shape:
        raise OutputError(path, f"HU array has shape {np.shape(hu)}, the source volume has {volume.hu.shape}")
    refuse_inputs(path, _inputs(volume))
    check_even_slices(volume, path)
    if kind == "nifti":
        check_nifti_geometry(volume, path)
    with atomic_write_files(path) as staging:
        (save_nifti if kind == "nifti" else save_itk)(volume, hu, staging / path.name)
    return path


def write_volume(
    volume: Volume,
    hu: np.ndarray,
    out: Path,
    *,
    format: str = "same",
    slice_ready: Callable[[int], None] | None = None,
    dicom: DicomOutput | None = None,
) -> list[Path]:
    """Write ``hu`` as a derived DICOM series (``out`` is a folder) or an image file (``out`` is a file).

    ``format``: "dicom" (needs a DICOM source and ``dicom``, how the derived series is written: see
    :class:`~ctdenoise.io.dicom_write.DicomOutput`; :func:`write_derived_dicom`),
    "nifti", "nrrd" or "mha" (``out`` gets ".nii.gz", ".nrrd" or ".mha" unless it already has that
    format's extension), or "same" (DICOM for DICOM sources, else the source's file format, adding the
    source's extension to ``out`` if it has none).
    ``slice_ready(k)`` may block until slice ``k`` of ``hu`` is computed: DICOM slices are then written
    as they become ready, image files once the last one is.
    """
    out = Path(out)
    if format not in WRITE_FORMATS:
        raise OutputError(out, f"unknown output format {format!r}; use one of {WRITE_FORMATS}")
    is_dicom = volume.source_format in ("dicom", "dicom-enhanced")
    if format == "dicom" or (format == "same" and is_dicom):
        if dicom is None:
            raise TypeError(f"{out}: writing a derived DICOM series needs dicom=DicomOutput(...) (its description texts)")
        return write_derived_dicom(volume, hu, out, dicom, slice_ready=slice_ready)
    if format in _FILE_FORMAT_SUFFIXES:
        suffix = _FILE_FORMAT_SUFFIXES[format]
        has_suffix = image_kind(out) == "nifti" if format == "nifti" else image_suffix(out) == suffix
        target = out if has_suffix else out.with_name(out.name + suffix)
    else:  # "same" for an image-file source: its own format
        source_suffix = image_suffix(volume.source_path)
        if source_suffix is None:
            raise OutputError(out, f"the source {volume.source_path} is not an image file; give --format")
        target = out if image_kind(out) is not None else out.with_name(out.name + source_suffix)
    check_even_slices(volume, target)  # refuse before waiting for (and computing) every slice
    if image_kind(target) == "nifti":
        check_nifti_geometry(volume, target)
    if slice_ready is not None:
        slice_ready(np.shape(hu)[0] - 1)
    return [write_image(volume, hu, target)]
