"""Opening DICOM files and checking their headers before any pixel is decoded.

Every check here works on the header alone, so a bad or oversized file is rejected before its
pixel data is read or decompressed.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ctdenoise.errors import (
    ImageTooLargeError,
    NotCTError,
    NotDicomError,
    PixelDataError,
    UnsupportedTransferSyntaxError,
)

CLASSIC_CT_SOP_CLASSES = frozenset({pydicom.uid.CTImageStorage})
ENHANCED_CT_SOP_CLASSES = frozenset(
    {pydicom.uid.EnhancedCTImageStorage, pydicom.uid.LegacyConvertedEnhancedCTImageStorage}
)
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


def read_dicom(path: Path, *, header_only: bool) -> Dataset:
    """Read a DICOM Part 10 file (or a preamble-less one with file meta); NotDicomError if it is not one.

    ``header_only`` stops before the pixel data so nothing large is read.
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    except InvalidDicomError as exc:
        raise NotDicomError(path, f"not a DICOM file ({exc})") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
        raise NotDicomError(path, f"cannot parse DICOM header: {type(exc).__name__}: {exc}") from None


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


def check_single_channel(ds: Dataset, path: Path) -> None:
    """Raise PixelDataError unless the image is greyscale with the geometry attributes that decoding needs."""
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if keyword not in ds:
            raise PixelDataError(path, f"no image: {keyword} is missing")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise PixelDataError(path, f"expected greyscale CT, SamplesPerPixel is {ds.SamplesPerPixel}")


def declared_voxels(ds: Dataset) -> int:
    """Rows * Columns * NumberOfFrames as declared in the header (no pixel data touched)."""
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
