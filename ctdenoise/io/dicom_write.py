"""Derived DICOM series: the denoised HU written back with the source's headers (design.md section 5).

New per derived object: SOPInstanceUID (and MediaStorageSOPInstanceUID), SeriesInstanceUID,
SeriesNumber (:func:`derived_series_number`), SeriesDescription suffix, ImageType DERIVED\\SECONDARY
(values 3+ kept), DerivationDescription and DerivationCodeSequence (after the source's own entries,
e.g. an earlier lossy compression, which are kept), a reference to the source image, and the dates and
creator below. Every other attribute, private tags included, is copied, so the Patient and Study
modules, StudyDate/Time and AcquisitionDate/Time stay the source's.

Dates and creator of a derived object (the standard's meaning of each, PS3.3):

* InstanceCreationDate/Time (SOP Common: "date/time the SOP Instance was created"): now.
* ContentDate/Time (General Image: "the date/time the image pixel data creation started"): now, the
  time the derived pixels were computed (the acquisition time stays in AcquisitionDate/Time).
* SeriesDate/Time (General Series: "date/time the Series started"): now, when the derived series began.
  "Now" is the time the series' writing began, one value for every object of the series, in the
  source's TimezoneOffsetFromUTC when it has a valid one (the dates of one object share one offset),
  else local time.
* InstanceCreatorUID (SOP Common: "uniquely identifies device or service that created the SOP
  Instance"): :data:`INSTANCE_CREATOR_UID`, ctdenoise's own; the source's (its scanner) would be false.

Lossy compression history (General Image / Enhanced General Equipment): LossyImageCompression stays
"01" once a source was lossy, with its LossyImageCompressionRatio/Method values kept; a source stored
in a lossy transfer syntax without that record gets it ("01" and the method of its syntax). Pixels keep
the source's BitsAllocated/BitsStored/PixelRepresentation and rescale; files are written in Explicit
VR Little Endian, or with ``compression`` in a lossless compressed syntax (:data:`COMPRESSION_SYNTAXES`),
through pydicom's encoders, which decode to exactly the same stored values (JPEG-LS holds signed pixels
at BitsStored = BitsAllocated, so that viewers which do not sign-extend show them right).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from ctdenoise.errors import OutputError
from ctdenoise.io.atomic import atomic_write_dir, refuse_inputs
from ctdenoise.io.dicom_pixels import to_stored
from ctdenoise.io.dicom_read import enhanced_frame_order, enhanced_frame_rescale
from ctdenoise.io.pool import map_files
from ctdenoise.io.volume import Volume

SERIES_NUMBER_FACTOR = 1000
"""A derived SeriesNumber is the source's times this plus a setting index of 1 .. 999 (:func:`derived_series_number`)."""
IS_MAX = 2**31 - 1
"""The largest value of an IS (Integer String) attribute."""

INSTANCE_CREATOR_UID = generate_uid(entropy_srcs=["ctdenoise derived-series writer"])
"""InstanceCreatorUID of every object ctdenoise writes: one fixed UID (under pydicom's root) naming ctdenoise."""

COMPRESSION_SYNTAXES = {
    "none": ExplicitVRLittleEndian,
    "rle": pydicom.uid.RLELossless,
    "jpeg-ls": pydicom.uid.JPEGLSLossless,
    "jpeg2000": pydicom.uid.JPEG2000Lossless,
}
"""``compression`` choices of :func:`write_derived_dicom` and their (lossless) transfer syntaxes."""

# Lossy transfer syntaxes and the LossyImageCompressionMethod (CID 7201 defined terms) they imply.
# JPEG 2000 (.91) and HTJ2K (.203) may hold lossless data too: for them only the source's own record counts.
_LOSSY_SYNTAX_METHODS = {
    pydicom.uid.JPEGBaseline8Bit: "ISO_10918_1",
    pydicom.uid.JPEGExtended12Bit: "ISO_10918_1",
    pydicom.uid.JPEGLSNearLossless: "ISO_14495_1",
}

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
                 "InstanceCreationTime", "ImageType", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
                 "InstanceCreatorUID")


def new_uid() -> str:
    """The one place where ctdenoise creates DICOM UIDs."""
    return generate_uid()


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _derivation_code(source: Dataset | None = None) -> DicomSequence:
    """The source's DerivationCodeSequence items (e.g. an earlier lossy compression), then ours:
    CID 7203 "Image Derivation", noise reduction is a smoothing operation."""
    kept = [copy.deepcopy(item) for item in (source.get("DerivationCodeSequence") or [])] if source is not None else []
    return DicomSequence(kept + [_code("113087", "DCM", "Smoothing")])


def _derivation_text(source: Dataset | None, ours: str) -> str:
    """DerivationDescription: the source's own (kept first, as its history) and ours, within ST's 1024 characters."""
    earlier = str(source.get("DerivationDescription", "") or "").strip() if source is not None else ""
    if not earlier:
        return ours[:1024]
    room = 1024 - len(ours) - 2
    return f"{earlier[:max(room, 0)]}; {ours}"[-1024:] if room > 0 else ours[:1024]


def _keep_lossy_history(ds: Dataset, source: Dataset) -> None:
    """LossyImageCompression stays "01" once lossy (PS3.3 C.7.6.1.1.5); a source in a lossy transfer
    syntax without that record gets it, with the method of its syntax. Ratio/Method values are kept."""
    syntax = UID(str(getattr(source, "file_meta", Dataset()).get("TransferSyntaxUID", ExplicitVRLittleEndian)))
    method = _LOSSY_SYNTAX_METHODS.get(syntax)
    if str(source.get("LossyImageCompression", "")).strip() == "01" or method is None:
        return
    ds.LossyImageCompression = "01"
    recorded = source.get("LossyImageCompressionMethod") or []
    methods = [str(recorded)] if isinstance(recorded, str) else [str(v) for v in recorded]
    ds.LossyImageCompressionMethod = methods + [method] if method not in methods else methods


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


def _source_timezone(source: Dataset) -> timezone | None:
    """The source's TimezoneOffsetFromUTC ("+hhmm"/"-hhmm") as a timezone, or None when absent or invalid."""
    match = re.fullmatch(r"([+-])(\d{2})(\d{2})", str(source.get("TimezoneOffsetFromUTC", "") or "").strip())
    if match is None or int(match[2]) > 14 or int(match[3]) > 59:
        return None
    offset = timedelta(hours=int(match[2]), minutes=int(match[3]))
    return timezone(-offset if match[1] == "-" else offset)


def derivation_time(source: Dataset) -> datetime:
    """Now, in the source's TimezoneOffsetFromUTC when it has a valid one, else in local time."""
    zone = _source_timezone(source)
    return datetime.now(zone) if zone is not None else datetime.now()


def _object_uid(source: Dataset, derived_uid: Callable[[str], str] | None) -> str:
    """The SOPInstanceUID of the object derived from ``source``: ``derived_uid``'s, else a new one."""
    return derived_uid(str(source.SOPInstanceUID)) if derived_uid is not None else new_uid()


def _common_header(source: Dataset, *, series_uid: str, series_number: int, description_suffix: str,
                   created: datetime, instance_uid: str) -> Dataset:
    ds = copy.deepcopy(source)
    for keyword in _NEW_KEYWORDS:  # set afresh, with the dictionary VR (a damaged source may carry another VR)
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPInstanceUID = instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = _series_description(source, description_suffix)
    date, time_of_day = created.strftime("%Y%m%d"), created.strftime("%H%M%S.%f")
    ds.InstanceCreationDate = ds.ContentDate = ds.SeriesDate = date
    ds.InstanceCreationTime = ds.ContentTime = ds.SeriesTime = time_of_day
    ds.InstanceCreatorUID = INSTANCE_CREATOR_UID
    _keep_lossy_history(ds, source)
    for keyword in _STALE_PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    meta = FileMetaDataset(copy.deepcopy(getattr(source, "file_meta", FileMetaDataset())))
    meta.MediaStorageSOPClassUID = source.SOPClassUID
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
                    "PrivateInformationCreatorUID", "PrivateInformation"):
        if keyword in meta:
            delattr(meta, keyword)
    ds.file_meta = meta
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray, compression: str) -> None:
    """Store ``stored`` uncompressed, or encoded losslessly in the syntax of ``compression`` by pydicom.

    Signed pixels go into JPEG-LS at the full BitsAllocated precision (BitsStored and HighBit raised to
    match; the values are unchanged), as dcmcjpls and gdcmconv encode them: at the source's 12 to 14 bits
    the negative values are two's complement in that width, which viewers that do not sign-extend (Orthanc
    1.10's preview) show as bright, so air and padding turned white."""
    if compression != "none":
        if compression == "jpeg-ls" and int(ds.get("PixelRepresentation", 0)) == 1:
            ds.BitsStored = int(ds.BitsAllocated)
            ds.HighBit = int(ds.BitsAllocated) - 1
        ds.compress(COMPRESSION_SYNTAXES[compression], np.ascontiguousarray(stored), generate_instance_uid=False)
        return
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    ds["PixelData"].VR = "OW" if stored.dtype.itemsize > 1 else "OB"
    ds["PixelData"].is_undefined_length = False


def _classic_dataset(source: Dataset, hu_slice: np.ndarray, padding: np.ndarray | None, **header) -> Dataset:
    derivation_description = header.pop("derivation_description")
    compression = header.pop("compression")
    ds = _common_header(source, **header)
    ds.ImageType = _derived_image_type(source.get("ImageType"), ["AXIAL"])
    ds.DerivationDescription = _derivation_text(source, derivation_description)
    ds.DerivationCodeSequence = _derivation_code(source)
    ds.SourceImageSequence = DicomSequence([_source_reference(source)])
    slope = float(source.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(source.get("RescaleIntercept", 0.0) or 0.0)
    stored = to_stored(source, hu_slice, slope, intercept)
    if padding is not None:
        stored[padding] = int(source.PixelPaddingValue)
    _set_pixels(ds, stored, compression)
    return ds


_SliceTask = tuple[Dataset, np.ndarray, "np.ndarray | None", dict[str, object], Path]


def _write_classic_slice(task: _SliceTask) -> None:
    """Build one derived slice (source dataset, HU slice, padding mask, header values) and save it to its path."""
    source, hu_slice, padding, header, path = task
    _classic_dataset(source, hu_slice, padding, **header).save_as(path, enforce_file_format=True)


def _classic_slice_tasks(
    volume: Volume, hu: np.ndarray, header: dict[str, object], derived_uid: Callable[[str], str] | None,
    wait_for: Callable[[int], None], paths: list[Path],
) -> Iterator[_SliceTask]:
    """The write task of each derived slice in slice order, slice ``k``'s made only once ``wait_for(k)`` returned."""
    masks = volume.padding_mask
    for k, source in enumerate(volume.dicom_datasets):
        wait_for(k)
        slice_header = dict(header, instance_uid=_object_uid(source, derived_uid))
        yield source, hu[k], None if masks is None else masks[k], slice_header, paths[k]


def _enhanced_dataset(source: Dataset, volume: Volume, hu: np.ndarray, **header) -> Dataset:
    derivation_description = header.pop("derivation_description")
    compression = header.pop("compression")
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
        earlier = [copy.deepcopy(item) for item in (group.get("DerivationImageSequence") or [])]
        group.DerivationImageSequence = DicomSequence(earlier + [derivation])  # the source's history first
    _set_pixels(ds, stored, compression)
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


def derived_series_number(source: Dataset, derivation_description: str) -> int:
    """The SeriesNumber of a derived series of ``source``: readable, valid IS, distinct per source and derivation.

    Rule: ``source SeriesNumber * 1000 + index``, so a radiologist sees the source's number in front
    (series 3 gives 3001 .. 3999, series 601 gives 601001 .. 601999). ``index`` (1 .. 999) is taken from
    the sha256 of the source's SeriesInstanceUID and ``derivation_description`` (which names the model, its
    settings and the strength): the same series derived twice with the same settings gets the same number
    (a re-run replaces, it does not add), different settings a different number (two settings share one
    with a chance of 1 in 999), and two source series that share a number get different ones. A source
    number that is absent, damaged, negative or too large for the product to stay within IS counts as 0
    (the derived number is then the index alone).
    """
    number = _source_series_number(source)
    if not 0 <= number <= (IS_MAX - SERIES_NUMBER_FACTOR + 1) // SERIES_NUMBER_FACTOR:
        number = 0
    identity = f"{source.get('SeriesInstanceUID', '')}\n{derivation_description}".encode("utf-8", "replace")
    index = int.from_bytes(hashlib.sha256(identity).digest()[:8], "big") % (SERIES_NUMBER_FACTOR - 1) + 1
    return number * SERIES_NUMBER_FACTOR + index  # never the source's own: index >= 1, and 0 <= number < 1000 * number + 1


def _check_encoder(compression: str, source: Dataset, out_dir: Path) -> None:
    """OutputError, before anything is written, when ``compression`` cannot encode the source's pixel layout."""
    if compression == "none":
        return
    from pydicom.pixels.encoders.base import get_encoder

    encoder = get_encoder(COMPRESSION_SYNTAXES[compression])
    if not encoder.is_available:
        missing = "; ".join(encoder.missing_dependencies)
        raise OutputError(out_dir, f"--compression {compression}: no installed plugin encodes {encoder.UID.name}; install {missing}")
    bits = int(source.get("BitsAllocated", 16))
    if compression in ("jpeg-ls", "jpeg2000") and bits > 16:
        raise OutputError(out_dir, f"--compression {compression} encodes at most 16 bits per pixel, the source has "
                          f"BitsAllocated {bits}; use --compression rle or none")


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
    compression: str = "none",
    workers: int | None = None,
) -> list[Path]:
    """Write ``hu`` as a derived DICOM series of ``volume``'s source into the folder ``out_dir``.

    Classic CT gives one file per slice (``IM00001.dcm``, ... in slice order); Enhanced CT gives
    one multi-frame file (``IM00001.dcm``) with its functional groups, frames in the source order.
    The folder is published atomically; it must not exist, be empty, or ``overwrite`` must be
    True, and it may not be or contain an input file (OutputError). Returns the written paths.

    ``slice_ready(k)``, when given, is called before slice ``k`` of ``hu`` is first read (before the
    whole array for Enhanced CT) and may block until that slice has been computed: the files are then
    written while ``hu`` is still being filled (:mod:`ctdenoise.jobs.overlap`).

    ``derived_uid(source_uid)``, when given, returns the UID of the derived object for a source
    SOPInstanceUID and the derived SeriesInstanceUID for the source SeriesInstanceUID (instead of new
    random UIDs), so that writing the same derivation again gives the same UIDs.

    ``series_number`` defaults to :func:`derived_series_number`. ``compression`` (a key of
    :data:`COMPRESSION_SYNTAXES`: none, rle, jpeg-ls, jpeg2000) encodes the pixels losslessly with
    pydicom's encoders; OutputError, before anything is written, when the encoder's plugin is missing or
    cannot encode the source's pixel layout.

    Classic slices are built, encoded and saved by ``workers`` processes (:func:`ctdenoise.io.pool.map_files`;
    None: one per available core, 1: in this thread), slice ``k`` handed to them as soon as
    ``slice_ready(k)`` returned and at most two slices per worker at a time; the files are the same
    bytes for every ``workers`` (given ``derived_uid``; random UIDs differ from run to run anyway).
    """
    out_dir = Path(out_dir)
    if compression not in COMPRESSION_SYNTAXES:
        raise OutputError(out_dir, f"unknown compression {compression!r}; use one of {', '.join(COMPRESSION_SYNTAXES)}")
    _check_writable(volume, hu, out_dir)
    _check_encoder(compression, volume.dicom_datasets[0], out_dir)
    hu = np.asarray(hu, dtype=np.float32)
    wait_for = slice_ready or (lambda _k: None)
    first = volume.dicom_datasets[0]
    number = series_number if series_number is not None else derived_series_number(first, derivation_description)
    header = dict(
        series_uid=derived_uid(str(first.SeriesInstanceUID)) if derived_uid is not None else new_uid(),
        series_number=number,
        description_suffix=series_description_suffix,
        created=derivation_time(first),
        derivation_description=derivation_description,
        compression=compression,
    )
    if volume.source_format == "dicom-enhanced":
        wait_for(hu.shape[0] - 1)
        enhanced = _enhanced_dataset(first, volume, hu, **header, instance_uid=_object_uid(first, derived_uid))
        with atomic_write_dir(out_dir, overwrite=overwrite) as staging:
            enhanced.save_as(staging / "IM00001.dcm", enforce_file_format=True)
        return [out_dir / "IM00001.dcm"]
    names = [f"IM{k + 1:05d}.dcm" for k in range(len(volume.dicom_datasets))]
    with atomic_write_dir(out_dir, overwrite=overwrite) as staging:
        tasks = _classic_slice_tasks(volume, hu, header, derived_uid, wait_for, [staging / name for name in names])
        for _ in map_files(_write_classic_slice, tasks, count=len(names), workers=workers):
            pass
    return [out_dir / name for name in names]
