"""Opening DICOM files and checking their headers before any pixel is decoded.

Every check here works on the header alone, so a bad or oversized file is rejected before its
pixel data is read or decompressed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID

from ctdenoise.errors import (
    ImageTooLargeError,
    NotCTError,
    NotDicomError,
    PixelDataError,
    UnsupportedTransferSyntaxError,
    quoted,
    shorten,
)

CLASSIC_CT_SOP_CLASSES = frozenset({pydicom.uid.CTImageStorage})
ENHANCED_CT_SOP_CLASSES = frozenset(
    {pydicom.uid.EnhancedCTImageStorage, pydicom.uid.LegacyConvertedEnhancedCTImageStorage}
)
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


class _SizeBoundedReader:
    """A binary file whose ``read(n)`` never asks for more than the bytes left in the file.

    ``io.BufferedReader.read(n)`` reserves ``n`` bytes before reading: an element that declares a
    length of 4 GB in a 4 kB file would make pydicom reserve 4 GB. Everything else is delegated.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._size = os.fstat(handle.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._handle.read()
        return self._handle.read(min(size, max(self._size - self._handle.tell(), 0)))

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


def read_dicom(path: Path, *, header_only: bool) -> Dataset:
    """Read a DICOM Part 10 file (or a preamble-less one with file meta); NotDicomError if it is not one.

    ``header_only`` stops before the pixel data so nothing large is read. pydicom converts element
    values lazily, on first access; every element (in sequences too) is converted here, so a corrupt
    value (unknown VR, undecodable text or number) is reported now, as NotDicomError with the file,
    instead of escaping later as a raw pydicom exception from whichever code touches it first. The
    dataset is picklable (it travels between the I/O worker processes and the caller): see
    :func:`_picklable_value`.
    """
    try:
        with open(path, "rb") as handle:
            ds = pydicom.dcmread(_SizeBoundedReader(handle), stop_before_pixels=header_only)
        ds.buffer = None  # the closed handle: ds.filename (its name) says where the dataset came from
    except InvalidDicomError as exc:
        raise NotDicomError(path, f"not a DICOM file ({shorten(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files make pydicom raise many types (struct, Unicode, VR, EOF ...)
        raise NotDicomError(path, f"cannot parse DICOM header: {type(exc).__name__}: {shorten(exc)}") from None
    _convert_elements(ds.file_meta, path)
    _convert_elements(ds, path)
    _record_transfer_syntax(ds, path)
    return ds


def _convert_elements(ds: Dataset, path: Path) -> None:
    """Convert every raw element of ``ds`` (recursing into sequences); NotDicomError naming the first bad one."""
    for tag in list(ds.keys()):
        try:
            element = ds[tag]
        except Exception as exc:  # noqa: BLE001 - unknown VR, bad number/text/UID encodings, ... (pydicom raises many types)
            name = pydicom.datadict.keyword_for_tag(tag) or "private or unknown"
            raise NotDicomError(
                path, f"cannot parse DICOM element {tag} ({name}): {type(exc).__name__}: {shorten(exc)}"
            ) from None
        _picklable_value(element)
        if element.VR == "SQ":
            for item in element.value or []:
                _convert_elements(item, path)


def _picklable_value(element: DataElement) -> None:
    """Make a multi-valued element picklable without changing its values.

    pydicom builds some multi-values (person names: ``convert_PN``) with a function local to its converter as
    the constructor of later items, which pickle cannot name ("Can't pickle local object
    'convert_PN.<locals>.get_valtype'"); such a value is set again through the element, which rebuilds it
    with the element's own converter (a method pickle can name) and the same items.
    """
    value = element.value
    if isinstance(value, MultiValue):
        constructor = getattr(value, "_constructor", None)
        qualname = getattr(constructor, "__qualname__", "")
        if "<locals>" in qualname or "<lambda>" in qualname:
            element.value = list(value)


def _record_transfer_syntax(ds: Dataset, path: Path) -> None:
    """Make ``ds.file_meta.TransferSyntaxUID`` a UID: the one pydicom parsed the file with when the file has none.

    Files without file meta information (or with a damaged one) are read by pydicom by guessing
    the encoding; recording that guess lets the pixel decoders, which need the UID, decode them. A
    Transfer Syntax UID stored with another VR than UI is taken as its text when it is text (SH, LO ...),
    and is NotDicomError naming the file when it is not (numbers, bytes), instead of an AttributeError
    wherever its UID properties are first used.
    """
    if "TransferSyntaxUID" in ds.file_meta:
        element = ds.file_meta["TransferSyntaxUID"]
        value = element.value
        if isinstance(value, UID):
            return
        if isinstance(value, str):
            ds.file_meta[element.tag] = DataElement(element.tag, "UI", UID(value.strip("\0 ")))
            return
        raise NotDicomError(path, f"(0002,0010) Transfer Syntax UID is not a UID (VR {element.VR}, value "
                                  f"{quoted(value)})")
    implicit, little = ds.original_encoding
    if little is False:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    elif implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian


def sop_class(ds: Dataset) -> str:
    """The SOP Class UID of a dataset (from the dataset, else the file meta), or ''."""
    uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    return str(uid or "")


def is_enhanced_ct(ds: Dataset) -> bool:
    """True for Enhanced CT and Legacy Converted Enhanced CT (multi-frame with functional groups)."""
    return sop_class(ds) in ENHANCED_CT_SOP_CLASSES


def check_ct(ds: Dataset, path: Path) -> None:
    """Raise NotCTError unless Modality is CT and the SOP class is a CT image storage class."""
    uid = sop_class(ds)
    if uid == DICOMDIR_SOP_CLASS:
        raise NotCTError(path, "a DICOMDIR index file, not an image")
    modality = ds.get("Modality", "")
    if modality != "CT":
        raise NotCTError(path, f"not a CT image (Modality {modality or 'missing'})")
    if uid not in CLASSIC_CT_SOP_CLASSES | ENHANCED_CT_SOP_CLASSES:
        raise NotCTError(path, f"not a CT image storage object (SOP class {UID(uid).name if uid else 'missing'})")


def check_transfer_syntax(ds: Dataset, path: Path) -> None:
    """Raise UnsupportedTransferSyntaxError when no installed pixel plugin decodes the file's syntax."""
    from pydicom.pixels.decoders.base import get_decoder

    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian)))
    if not syntax.is_transfer_syntax:
        raise UnsupportedTransferSyntaxError(path, f"unknown transfer syntax {syntax}")
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(path, f"no pixel decoder exists for {syntax.name} ({syntax})") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise UnsupportedTransferSyntaxError(
            path, f"no installed plugin decodes {syntax.name} ({syntax}); install one of: {missing}"
        )


SUPPORTED_BITS_ALLOCATED = (8, 16, 32)
"""BitsAllocated values a greyscale CT image can have (1 is for bitmaps, others are not DICOM)."""


def header_integer(ds: Dataset, keyword: str, path: Path, *, default: int | None = None, low: int | None = None,
                   high: int | None = None) -> int:
    """The value of an integer attribute, checked to lie in [low, high]; PixelDataError when it is absent
    (without a default), multi-valued, not an integer, or out of range."""
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise PixelDataError(path, f"no image: {keyword} is missing")
        return default
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise PixelDataError(path, f"{keyword} is not an integer ({quoted(value)})") from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise PixelDataError(path, f"{keyword} {number} is outside [{low}, {high}]")
    return number


def header_number(item: Dataset, keyword: str, path: Path | None, default: float) -> float:
    """The value of a decimal attribute (RescaleSlope, SliceThickness ...) as a finite float, else ``default``
    when absent; PixelDataError when it is not a finite number."""
    value = item.get(keyword)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise PixelDataError(path, f"{keyword} is not a number ({quoted(value)})") from None
    if not math.isfinite(number):
        raise PixelDataError(path, f"{keyword} must be finite, got {number}")
    return number


def check_single_channel(ds: Dataset, path: Path) -> None:
    """Raise PixelDataError unless the image is greyscale and its pixel-module attributes can be decoded.

    Rows, Columns and NumberOfFrames must be positive integers, BitsAllocated one of
    SUPPORTED_BITS_ALLOCATED, BitsStored within it, PixelRepresentation 0 or 1, RescaleSlope a
    finite non-zero number and the other numbers that reading uses finite.
    """
    header_integer(ds, "Rows", path, low=1)
    header_integer(ds, "Columns", path, low=1)
    header_integer(ds, "NumberOfFrames", path, default=1, low=1)
    if header_integer(ds, "SamplesPerPixel", path, default=1) != 1:
        raise PixelDataError(path, f"expected greyscale CT, SamplesPerPixel is {ds.SamplesPerPixel}")
    bits = header_integer(ds, "BitsAllocated", path)
    if bits not in SUPPORTED_BITS_ALLOCATED:
        raise PixelDataError(path, f"BitsAllocated {bits} is not one of {SUPPORTED_BITS_ALLOCATED}")
    header_integer(ds, "BitsStored", path, default=bits, low=1, high=bits)
    header_integer(ds, "PixelRepresentation", path, default=0, low=0, high=1)
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        header_integer(ds, keyword, path, default=0)
    if header_number(ds, "RescaleSlope", path, 1.0) == 0:
        raise PixelDataError(path, "RescaleSlope is 0: stored values cannot be mapped to HU")
    for keyword in ("RescaleIntercept", "SliceThickness", "SpacingBetweenSlices"):
        header_number(ds, keyword, path, 0.0)


def declared_voxels(ds: Dataset) -> int:
    """Rows * Columns * NumberOfFrames as declared in the header (no pixel data touched; checked by check_header)."""
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)


def check_size(total_voxels: int, max_voxels: int, path: Path) -> None:
    """Raise ImageTooLargeError when the declared voxel count exceeds ``max_voxels``."""
    if total_voxels > max_voxels:
        raise ImageTooLargeError(
            path, f"declares {total_voxels:,} voxels, more than the limit of {max_voxels:,} (max_voxels)"
        )


def check_header(ds: Dataset, path: Path) -> None:
    """All header-only checks for a CT image file: CT, decodable syntax, greyscale image present."""
    check_ct(ds, path)
    check_single_channel(ds, path)
    check_transfer_syntax(ds, path)


def describe(ds: Dataset, path: Path) -> str:
    """A log-friendly name for a series without patient information."""
    text = str(ds.get("SeriesDescription", "") or "").strip()
    if text:
        return text
    number = ds.get("SeriesNumber")
    return f"CT series {number}" if number not in (None, "") else path.name
