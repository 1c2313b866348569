"""Derived DICOM series: the denoised HU written back with the source's headers (design.md section 5).

New per derived object: SOPInstanceUID (and MediaStorageSOPInstanceUID), SeriesInstanceUID,
SeriesNumber, SeriesDescription suffix, ImageType DERIVED\\SECONDARY (values 3+ kept),
DerivationDescription and DerivationCodeSequence, a reference to the source image,
InstanceCreationDate/Time. Every other attribute, private tags included, is copied. Pixels keep
the source's BitsAllocated/BitsStored/PixelRepresentation and rescale; files are written in
Explicit VR Little Endian.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ctdenoise.errors import OutputError
from ctdenoise.io.atomic import atomic_write_dir, refuse_inputs
from ctdenoise.io.dicom_pixels import to_stored
from ctdenoise.io.dicom_read import enhanced_frame_order, enhanced_frame_rescale
from ctdenoise.io.volume import Volume

DEFAULT_DERIVED_SERIES_OFFSET = 1000
"""Derived SeriesNumber = source SeriesNumber + this, unless a series_number is given."""

# Attributes that describe the stored pixel values or their encoding, and become wrong once pixels change.
_STALE_PIXEL_KEYWORDS = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
    "FloatPixelData",
    "DoubleFloatPixelData",
)


# Attributes that every derived object (classic and Enhanced CT) gets new values for.
_NEW_KEYWORDS = ("SOPInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "InstanceCreationDate",
                 "InstanceCreationTime", "ImageType")


def new_uid() -> str:
    """The one place where ctdenoise creates DICOM UIDs."""
    return generate_uid()


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _derivation_code() -> DicomSequence:
    # CID 7203 "Image Derivation": noise reduction is a smoothing operation.
    return DicomSequence([_code("113087", "DCM", "Smoothing")])


def _source_reference(source: Dataset, frame_number: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_number is not None:
        item.ReferencedFrameNumber = frame_number
    # CID 7202: "Source image for image processing operation".
    item.PurposeOfReferenceCodeSequence = DicomSequence([_code("121322", "DCM", "Source image for image processing operation")])
    return item


def _derived_image_type(values, default_tail: list[str], *, enhanced: bool = False) -> list[str]:
    """Value 1 DERIVED; value 2 SECONDARY (classic) or PRIMARY (Enhanced CT allows only PRIMARY); values 3+ kept."""
    values = list(values) if values else []
    return ["DERIVED", "PRIMARY" if enhanced else "SECONDARY"] + (values[2:] if len(values) > 2 else default_tail)


def _series_description(source: Dataset, suffix: str) -> str:
    base = str(source.get("SeriesDescription", "") or "").strip()
    suffix = suffix.strip()
    if not base:
        return suffix[:64]
    room = 64 - len(suffix) - 1  # LO holds 64 characters: shorten the source text, never the suffix
    return f"{base[:max(room, 0)].rstrip()} {suffix}".strip()[:64]


def _common_header(source: Dataset, *, series_uid: str, series_number: int, description_suffix: str,
                   created: datetime, derived_uid: Callable[[str], str] | None = None) -> Dataset:
    ds = copy.deepcopy(source)
    for keyword in _NEW_KEYWORDS:  # set afresh, with the dictionary VR (a damaged source may carry another VR)
        if keyword in ds:
            delattr(ds, keyword)
    uid = derived_uid(str(source.SOPInstanceUID)) if derived_uid is not None else new_uid()
    ds.SOPInstanceUID = uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = _series_description(source, description_suffix)
    ds.InstanceCreationDate = created.strftime("%Y%m%d")
    ds.InstanceCreationTime = created.strftime("%H%M%S.%f")
    for keyword in _STALE_PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    meta = FileMetaDataset(copy.deepcopy(getattr(source, "file_meta", FileMetaDataset())))
    meta.MediaStorageSOPClassUID = source.SOPClassUID
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
                    "PrivateInformationCreatorUID", "PrivateInformation"):
        if keyword in meta:
            delattr(meta, keyword)
    ds.file_meta = meta
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    ds["PixelData"].VR = "OW" if stored.dtype.itemsize > 1 else "OB"
    ds["PixelData"].is_undefined_length = False


def _classic_dataset(source: Dataset, hu_slice: np.ndarray, padding: np.ndarray | None, **header) -> Dataset:
    derivation_description = header.pop("derivation_description")
    ds = _common_header(source, **header)
    ds.ImageType = _derived_image_type(source.get("ImageType"), ["AXIAL"])
    ds.DerivationDescription = derivation_description[:1024]
    ds.DerivationCodeSequence = _derivation_code()
    ds.SourceImageSequence = DicomSequence([_source_reference(source)])
    slope = float(source.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(source.get("RescaleIntercept", 0.0) or 0.0)
    stored = to_stored(source, hu_slice, slope, intercept)
    if padding is not None:
        stored[padding] = int(source.PixelPaddingValue)
    _set_pixels(ds, stored)
    return ds


def _classic_datasets(
    volume: Volume, hu: np.ndarray, header: dict[str, object], wait_for: Callable[[int], None]
) -> Iterator[Dataset]:
    """The derived slice datasets in slice order, slice ``k`` built only once ``wait_for(k)`` returned."""
    masks = volume.padding_mask
    for k, source in enumerate(volume.dicom_datasets):
        wait_for(k)
        yield _classic_dataset(source, hu[k], None if masks is None else masks[k], **dict(header))


def _enhanced_dataset(source: Dataset, volume: Volume, hu: np.ndarray, **header) -> Dataset:
    derivation_description = header.pop("derivation_description")
    ds = _common_header(source, **header)
    ds.ImageType = _derived_image_type(source.get("ImageType"), ["AXIAL"], enhanced=True)
    ds.SourceImageEvidenceSequence = DicomSequence([_evidence(source)])
    order = enhanced_frame_order(source, volume.source_path)
    frames = np.empty(hu.shape, dtype=np.float32)
    frames[order] = hu  # back to the source frame order, so the functional groups still match
    padding = None
    if volume.padding_mask is not None:
        padding = np.zeros(hu.shape, dtype=bool)
        padding[order] = volume.padding_mask
    stored = np.stack([
        to_stored(source, frames[f], *enhanced_frame_rescale(source, f)) for f in range(frames.shape[0])
    ])
    if padding is not None:
        stored[padding] = int(source.PixelPaddingValue)
    for group in ds.SharedFunctionalGroupsSequence or []:
        _derive_frame_type(group)
    for frame, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        _derive_frame_type(group)
        derivation = Dataset()
        derivation.DerivationDescription = derivation_description[:1024]
        derivation.DerivationCodeSequence = _derivation_code()
        derivation.SourceImageSequence = DicomSequence([_source_reference(source, frame + 1)])
        group.DerivationImageSequence = DicomSequence([derivation])
    _set_pixels(ds, stored)
    return ds


def _derive_frame_type(group: Dataset) -> None:
    for item in group.get("CTImageFrameTypeSequence") or []:
        if "FrameType" in item:
            item.FrameType = _derived_image_type(item.FrameType, ["AXIAL"], enhanced=True)


def _evidence(source: Dataset) -> Dataset:
    """Hierarchical SOP instance reference to the source (Enhanced CT requires it for DERIVED images)."""
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.SOPClassUID
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedSOPSequence = DicomSequence([instance])
    study = Dataset()
    study.StudyInstanceUID = source.StudyInstanceUID
    study.ReferencedSeriesSequence = DicomSequence([series])
    return study


def _source_series_number(source: Dataset) -> int:
    """The source's SeriesNumber, or 0 when it is absent or not one integer (damaged or hostile files)."""
    try:
        return int(source.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _check_writable(volume: Volume, hu: np.ndarray, out_dir: Path) -> None:
    if not volume.dicom_datasets:
        raise OutputError(out_dir, f"the source {volume.source_path} is not DICOM; write NIfTI/NRRD instead")
    if np.shape(hu) != volume.hu.shape:
        raise OutputError(out_dir, f"HU array has shape {np.shape(hu)}, the source volume has {volume.hu.shape}")
    inputs = [volume.source_path] + [Path(ds.filename) for ds in volume.dicom_datasets if getattr(ds, "filename", None)]
    refuse_inputs(out_dir, inputs)


def write_derived_dicom(
    volume: Volume,
    hu: np.ndarray,
    out_dir: Path,
    *,
    series_description_suffix: str,
    derivation_description: str,
    series_number: int | None = None,
    overwrite: bool = False,
    slice_ready: Callable[[int], None] | None = None,
    derived_uid: Callable[[str], str] | None = None,
) -> list[Path]:
    """Write ``hu`` as a derived DICOM series of ``volume``'s source into the folder ``out_dir``.

    Classic CT gives one file per slice (``IM00001.dcm``, ... in slice order); Enhanced CT gives
    one multi-frame file (``IM00001.dcm``) with its functional groups, frames in the source order.
    The folder is published atomically; it must not exist, be empty, or ``overwrite`` must be
    True, and it may not be or contain an input file (OutputError). Returns the written paths.

    ``slice_ready(k)``, when given, is called before slice ``k`` of ``hu`` is first read (before the
    whole array for Enhanced CT) and may block until that slice has been computed: the files are then
    written while ``hu`` is still being filled (:mod:`ctdenoise.overlap`).

    ``derived_uid(source_uid)``, when given, returns the UID of the derived object for a source
    SOPInstanceUID and the derived SeriesInstanceUID for the source SeriesInstanceUID (instead of new
    random UIDs), so that writing the same derivation again gives the same UIDs.
    """
    out_dir = Path(out_dir)
    _check_writable(volume, hu, out_dir)
    hu = np.asarray(hu, dtype=np.float32)
    wait_for = slice_ready or (lambda _k: None)
    first = volume.dicom_datasets[0]
    number = series_number if series_number is not None else _source_series_number(first) + DEFAULT_DERIVED_SERIES_OFFSET
    header = dict(
        series_uid=derived_uid(str(first.SeriesInstanceUID)) if derived_uid is not None else new_uid(),
        series_number=number,
        description_suffix=series_description_suffix,
        created=datetime.now(),
        derivation_description=derivation_description,
        derived_uid=derived_uid,
    )
    if volume.source_format == "dicom-enhanced":
        wait_for(hu.shape[0] - 1)
        datasets = iter([_enhanced_dataset(first, volume, hu, **header)])
        count = 1
    else:  # one derived slice at a time, so only one slice of stored pixels is in memory
        datasets = _classic_datasets(volume, hu, header, wait_for)
        count = len(volume.dicom_datasets)
    names = [f"IM{k + 1:05d}.dcm" for k in range(count)]
    with atomic_write_dir(out_dir, overwrite=overwrite) as staging:
        for ds, name in zip(datasets, names):
            ds.save_as(staging / name, enforce_file_format=True)
    return [out_dir / name for name in names]
