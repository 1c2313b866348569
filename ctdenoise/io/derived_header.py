"""The header policy of a derived DICOM object: the source's Dataset in, the derived object's Dataset out.

No pixel values are read or written here (:mod:`ctdenoise.io.dicom_write` encodes them), so every rule below
can be checked on a Dataset that has no pixel data.

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
  "Now" is the time the series' writing began (:func:`derivation_time`), one value for every object of the
  series, in the source's TimezoneOffsetFromUTC when it has a valid one (the dates of one object share one
  offset), else local time.
* InstanceCreatorUID (SOP Common: "uniquely identifies device or service that created the SOP
  Instance"): :data:`ctdenoise.io.uids.INSTANCE_CREATOR_UID`, ctdenoise's own; the source's (its scanner)
  would be false.

Lossy compression history (General Image / Enhanced General Equipment): LossyImageCompression stays
"01" once a source was lossy, with its LossyImageCompressionRatio/Method values kept; a source stored
in a lossy transfer syntax without that record gets it ("01" and the method of its syntax). Attributes
that describe the source's stored values (smallest/largest pixel value, float pixel data, extended offset
tables) are removed. The file meta says Explicit VR Little Endian; the writer changes it when it encodes.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from ctdenoise.io.uids import INSTANCE_CREATOR_UID

SERIES_NUMBER_FACTOR = 1000
"""A derived SeriesNumber is the source's times this plus a setting index of 1 .. 999 (:func:`derived_series_number`)."""
IS_MAX = 2**31 - 1
"""The largest value of an IS (Integer String) attribute."""

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


@dataclass(frozen=True)
class DerivedSeries:
    """What every object of one derived series shares: its ``series_uid`` and ``series_number``, the
    ``description_suffix`` added to the source's SeriesDescription, the ``derivation_description`` (what
    was done, with which model and settings) and the time ``created`` (:func:`derivation_time`)."""

    series_uid: str
    series_number: int
    description_suffix: str
    derivation_description: str
    created: datetime


def derived_classic_header(source: Dataset, series: DerivedSeries, instance_uid: str) -> Dataset:
    """The header of the classic (one slice) object derived from ``source`` as ``instance_uid`` of ``series``:
    a copy of ``source`` with the new attributes of the module docstring, ImageType DERIVED\\SECONDARY, the
    source's derivation history followed by ours, and a SourceImageSequence naming ``source``. ``source``
    is not modified; its pixel data, if any, is copied unchanged."""
    ds = _common_header(source, series, instance_uid)
    ds.ImageType = _derived_image_type(source.get("ImageType"), ["AXIAL"])
    ds.DerivationDescription = _derivation_text(source, series.derivation_description)
    ds.DerivationCodeSequence = _derivation_code(source)
    ds.SourceImageSequence = DicomSequence([_source_reference(source)])
    return ds


def derived_enhanced_header(source: Dataset, series: DerivedSeries, instance_uid: str) -> Dataset:
    """The header of the Enhanced CT (multi-frame) object derived from ``source`` as ``instance_uid`` of
    ``series``: a copy of ``source`` with the new attributes of the module docstring, ImageType and each
    FrameType DERIVED\\PRIMARY (Enhanced CT allows only PRIMARY), a SourceImageEvidenceSequence naming
    ``source``, and in each frame's functional group a DerivationImageSequence item after the source's own
    that references that frame of ``source``. ``source`` is not modified."""
    ds = _common_header(source, series, instance_uid)
    ds.ImageType = _derived_image_type(source.get("ImageType"), ["AXIAL"], enhanced=True)
    ds.SourceImageEvidenceSequence = DicomSequence([_evidence(source)])
    for group in ds.SharedFunctionalGroupsSequence or []:
        _derive_frame_type(group)
    for frame, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        _derive_frame_type(group)
        derivation = Dataset()
        derivation.DerivationDescription = series.derivation_description[:1024]
        derivation.DerivationCodeSequence = _derivation_code()
        derivation.SourceImageSequence = DicomSequence([_source_reference(source, frame + 1)])
        earlier = [copy.deepcopy(item) for item in (group.get("DerivationImageSequence") or [])]
        group.DerivationImageSequence = DicomSequence(earlier + [derivation])  # the source's history first
    return ds


def derivation_time(source: Dataset) -> datetime:
    """Now, in the source's TimezoneOffsetFromUTC when it has a valid one, else in local time."""
    zone = _source_timezone(source)
    return datetime.now(zone) if zone is not None else datetime.now()


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


def _common_header(source: Dataset, series: DerivedSeries, instance_uid: str) -> Dataset:
    ds = copy.deepcopy(source)
    for keyword in _NEW_KEYWORDS:  # set afresh, with the dictionary VR (a damaged source may carry another VR)
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPInstanceUID = instance_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDescription = _series_description(source, series.description_suffix)
    date, time_of_day = series.created.strftime("%Y%m%d"), series.created.strftime("%H%M%S.%f")
    ds.InstanceCreationDate = ds.ContentDate = ds.SeriesDate = date
    ds.InstanceCreationTime = ds.ContentTime = ds.SeriesTime = time_of_day
    ds.InstanceCreatorUID = INSTANCE_CREATOR_UID
    _keep_lossy_history(ds, source)
    for keyword in _STALE_PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    meta = FileMetaDataset(copy.deepcopy(getattr(source, "file_meta", FileMetaDataset())))
    meta.MediaStorageSOPClassUID = source.SOPClassUID
    meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
                    "PrivateInformationCreatorUID", "PrivateInformation"):
        if keyword in meta:
            delattr(meta, keyword)
    ds.file_meta = meta
    return ds


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


def _source_series_number(source: Dataset) -> int:
    """The source's SeriesNumber, or 0 when it is absent or not one integer (damaged or hostile files)."""
    try:
        return int(source.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
