"""NIfTI (nibabel) and NRRD/MetaImage (SimpleITK) reading and writing.

Intensities of these files are taken to be HU already (no rescale is guessed). NIfTI stores
RAS coordinates; the Volume affine is LPS (see :mod:`ctdenoise.io.volume`), so the first two
rows are negated on the way in and out. SimpleITK (a large native library) is imported only when an
NRRD/MetaImage file is read or written, so DICOM and NIfTI work does not load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from ctdenoise.errors import InputError, OutputError, shorten
from ctdenoise.io.dicom_headers import check_size
from ctdenoise.io.geometry import uneven_slices
from ctdenoise.io.volume import LPS_TO_RAS, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIFTI_POSITION_TOLERANCE_MM = 0.1
"""Largest distance between a voxel's true position and where a NIfTI reader puts it (qform or sform)."""
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def image_suffix(path: Path) -> str | None:
    """The recognised image-file suffix of ``path`` (lower case, '.nii.gz' as one), or None."""
    name = path.name.lower()
    for suffix in NIFTI_SUFFIXES[::-1] + ITK_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def image_kind(path: Path) -> str | None:
    """'nifti', 'itk', or None for a path that is not a recognised image file."""
    suffix = image_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    return "itk" if suffix in ITK_SUFFIXES else None


def _as_3d(data_shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    shape = tuple(data_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3:
        raise InputError(path, f"expected a 3-D image, got shape {tuple(data_shape)}")
    return shape


def check_finite_voxels(hu: np.ndarray, path: Path, scaling: str = "") -> None:
    """InputError naming ``path``, how many voxels and the first one, when a voxel is NaN or infinite (a damaged
    or hostile scaling, e.g. a NIfTI scl_slope of inf; ``scaling`` describes the file's own, for the message)."""
    finite = np.isfinite(hu)
    if not finite.all():
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise InputError(path, f"{int(finite.size - np.count_nonzero(finite)):,} voxels are not finite numbers (NaN "
                               f"or infinity), the first at index {first}{scaling}")


def _file_volume(hu: np.ndarray, affine: np.ndarray, path: Path, source_format: str) -> Volume:
    """A Volume for an image file: spacing is the length of the affine's (col, row, slice) columns.

    InputError when the affine is not finite or its axes are degenerate (a zero or NaN voxel size,
    as a damaged header declares): such a volume has no geometry to write back.
    """
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, f"voxel-to-patient affine is degenerate or not finite: {np.round(affine, 4).tolist()}")
    col, row, slc = (float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return Volume(hu=hu, spacing=(slc, row, col), affine=affine, source_path=path, source_format=source_format,
                  dicom_datasets=None, description=path.name)


def read_nifti(path: Path, *, max_voxels: int) -> Volume:
    """Read a NIfTI file (scaling applied) as HU; the LPS affine is derived from its RAS affine."""
    try:
        image = cast(SpatialImage, nib.load(path))  # a .nii(.gz) file loads as a Nifti1Image or Nifti2Image
    except Exception as exc:  # noqa: BLE001 - nibabel raises several types for corrupt files
        raise InputError(path, f"cannot read NIfTI file: {type(exc).__name__}: {shorten(exc)}") from None
    shape = _as_3d(image.shape, path)
    check_size(int(np.prod(shape)), max_voxels, path)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as exc:  # noqa: BLE001 - likewise for its voxel data
        raise InputError(path, f"cannot read NIfTI voxel data: {type(exc).__name__}: {shorten(exc)}") from None
    slope, inter = getattr(image.dataobj, "slope", 1.0), getattr(image.dataobj, "inter", 0.0)  # as applied
    check_finite_voxels(data, path, f" (scl_slope {float(slope):g}, scl_inter {float(inter):g})")
    affine = LPS_TO_RAS @ image.affine
    return _file_volume(np.ascontiguousarray(data.transpose(2, 1, 0)), affine, path, "nifti")


def read_itk(path: Path, *, max_voxels: int) -> Volume:
    """Read an NRRD or MetaImage file with SimpleITK (size checked from the header first)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(path, f"cannot read image header: {str(exc).strip().splitlines()[-1]}") from None
    size = tuple(reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise InputError(path, f"expected a greyscale image, it has {reader.GetNumberOfComponents()} components")
    _as_3d(size, path)
    check_size(int(np.prod(size)), max_voxels, path)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, f"cannot read image data: {str(exc).strip().splitlines()[-1]}") from None
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise InputError(path, f"expected a 3-D image, it has {image.GetDimension()} dimensions")
    spacing = np.asarray(image.GetSpacing())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = image.GetOrigin()
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    check_finite_voxels(hu, path)
    return _file_volume(hu, affine, path, "itk")


def _source_nifti_header(volume: Volume):
    if volume.source_format != "nifti":
        return None
    try:
        return nib.load(volume.source_path).header
    except Exception:  # noqa: BLE001 - the source may have moved: a fresh header is then the honest choice
        return None


def nifti_position_error(volume: Volume) -> float:
    """Largest distance (mm) between a voxel's true position and where a NIfTI reader puts it, over both
    of NIfTI's transforms as stored (qform: rotation, voxel sizes and flip only; sform: any affine, in
    float32) and the volume's corner voxels (an affine's error is largest at a corner)."""
    affine = LPS_TO_RAS @ volume.affine
    header = nib.Nifti1Header()
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    slices, rows, cols = volume.hu.shape
    corners = np.array([[i, j, k, 1.0] for i in (0, cols - 1) for j in (0, rows - 1) for k in (0, slices - 1)])
    true = corners @ affine.T
    return max(float(np.max(np.linalg.norm((corners @ np.asarray(stored, dtype=np.float64).T - true)[:, :3], axis=1)))
               for stored in (header.get_qform(), header.get_sform()))


def check_nifti_geometry(volume: Volume, path: Path) -> None:
    """OutputError naming ``path`` when NIfTI cannot hold ``volume``'s geometry within
    :data:`NIFTI_POSITION_TOLERANCE_MM` (:func:`nifti_position_error`): a sheared volume, e.g. a
    tilted-gantry CT series, has no exact qform, and ITK/SimpleITK read the qform (nibabel the sform)."""
    error = nifti_position_error(volume)
    if error > NIFTI_POSITION_TOLERANCE_MM:
        raise OutputError(
            path,
            f"NIfTI cannot hold this volume's geometry exactly: its axes are sheared (e.g. a tilted gantry), so "
            f"the NIfTI qform that ITK/SimpleITK read would misplace voxels by up to {error:.1f} mm (limit "
            f"{NIFTI_POSITION_TOLERANCE_MM} mm); write NRRD or MetaImage instead (--format nrrd / --format mha, "
            "or a .nrrd/.mha file name), which store sheared axes exactly, or DICOM",
        )


def check_even_slices(volume: Volume, path: Path) -> None:
    """OutputError naming ``path`` and the uneven steps when ``volume``'s slices are not evenly spaced
    (:func:`~ctdenoise.io.geometry.uneven_slices`): NIfTI, NRRD and MetaImage hold one slice step, so every
    slice after an uneven step would be written at a place it was not scanned."""
    problem = uneven_slices(volume)
    if problem is not None:
        raise OutputError(path, f"{problem}. NIfTI, NRRD and MetaImage hold one step for all slices: write DICOM "
                                "(--format dicom), which keeps each slice's own position")


def save_nifti(volume: Volume, hu: np.ndarray, path: Path) -> None:
    """Write float32 HU as NIfTI with the volume's affine (RAS on disk) and, for NIfTI sources, their header.

    Both the qform and the sform are written; :func:`check_nifti_geometry` (called first) refuses a
    volume for which they would disagree with its true voxel positions, before anything is written.
    """
    check_nifti_geometry(volume, path)
    affine = LPS_TO_RAS @ volume.affine
    data = np.asarray(hu, dtype=np.float32).transpose(2, 1, 0)
    source_header = _source_nifti_header(volume)
    image_type = nib.Nifti2Image if isinstance(source_header, nib.Nifti2Header) else nib.Nifti1Image
    header = source_header.copy() if source_header is not None else None
    image = image_type(data, affine, header=header)
    image.header.set_data_dtype(np.float32)
    image.header.set_slope_inter(None, None)
    if source_header is not None:
        image.set_qform(affine, code=int(source_header["qform_code"]) or 1)
        image.set_sform(affine, code=int(source_header["sform_code"]) or 1)
    else:
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
    nib.save(image, path)


def save_itk(volume: Volume, hu: np.ndarray, path: Path) -> None:
    """Write float32 HU with SimpleITK (format from the extension), keeping origin, spacing and direction."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(hu, dtype=np.float32))
    # Step lengths of the affine columns (equal to volume.spacing except for tilted stacks).
    image.SetSpacing(tuple(float(v) for v in np.linalg.norm(volume.affine[:3, :3], axis=0)))
    image.SetOrigin(tuple(float(v) for v in volume.origin))
    image.SetDirection(tuple(float(v) for v in volume.direction.flatten()))
    try:
        sitk.WriteImage(image, str(path), useCompression=True)
    except RuntimeError as exc:
        raise OutputError(path, f"cannot write image: {str(exc).strip().splitlines()[-1]}") from None
