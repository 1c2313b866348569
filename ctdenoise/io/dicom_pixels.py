"""Decoding DICOM pixel data to Hounsfield units, and encoding HU back to stored values.

HU = stored * RescaleSlope + RescaleIntercept, applied per slice (classic CT) or per frame
(Enhanced CT, from the PixelValueTransformationSequence). Voxels equal to PixelPaddingValue
(or inside [PixelPaddingValue, PixelPaddingRangeLimit]) are padding outside the scanned field of
view: they are set to :data:`PADDING_HU` (air) and reported in a mask so a derived series can
write them back as padding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ctdenoise.errors import PixelDataError, shorten

PADDING_HU = -1024.0
"""HU given to padding voxels: air, the lower end of the CT range the model sees."""


def expected_native_bytes(ds: Dataset) -> int:
    """Bytes of uncompressed pixel data the header declares (all frames)."""
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated)
    return (bits + 7) // 8


def decode_stored(ds: Dataset, path: Path) -> np.ndarray:
    """Return stored pixel values as (frames, rows, cols); PixelDataError on missing/truncated/undecodable data."""
    if "PixelData" not in ds:
        raise PixelDataError(path, "the file has no Pixel Data element")
    element = ds["PixelData"]
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        have, want = len(element.value or b""), expected_native_bytes(ds)
        if have < want:
            raise PixelDataError(path, f"pixel data truncated: {have:,} bytes, the header declares {want:,}")
    try:
        stored = ds.pixel_array
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - plugins raise many types; the user needs file and reason, not a traceback.
        # BaseException: the Rust decoders (pylibjpeg-rle) raise pyo3 PanicException on corrupt data,
        # which is not an Exception and would otherwise end the whole batch.
        raise PixelDataError(
            path, f"cannot decode pixel data ({ds.file_meta.TransferSyntaxUID.name}): {type(exc).__name__}: {shorten(exc)}"
        ) from None
    if stored.ndim == 2:
        stored = stored[np.newaxis]
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if stored.shape != (frames, int(ds.Rows), int(ds.Columns)):
        raise PixelDataError(path, f"decoded pixel array has shape {stored.shape}, expected "
                                   f"{(frames, int(ds.Rows), int(ds.Columns))}")
    return stored


def padding_mask(ds: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """Boolean mask of padding voxels, or None when the file declares no PixelPaddingValue."""
    if "PixelPaddingValue" not in ds:
        return None
    value = int(ds.PixelPaddingValue)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        mask = stored == value
    else:
        low, high = sorted((value, int(limit)))
        mask = (stored >= low) & (stored <= high)
    return mask if mask.any() else None


def to_hu(stored: np.ndarray, slope: float, intercept: float, path: Path | None = None) -> np.ndarray:
    """HU = stored * slope + intercept, as float32 (computed in float64); every value finite.

    PixelDataError naming ``path`` when the rescale maps a stored value beyond float32 (e.g. a RescaleSlope
    of -1e308 gives -inf), so no infinite or NaN HU leaves the reader.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        hu = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
    if not np.all(np.isfinite(hu)):
        low, high = int(stored.min()), int(stored.max())
        raise PixelDataError(
            path, f"RescaleSlope {slope:g} and RescaleIntercept {intercept:g} map the stored values "
                  f"[{low}, {high}] to HU that are not finite numbers (beyond +-{np.finfo(np.float32).max:.1e})")
    return hu


def stored_range(ds: Dataset) -> tuple[int, int]:
    """Smallest and largest value representable with the dataset's BitsStored and PixelRepresentation."""
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def storage_dtype(ds: Dataset) -> np.dtype:
    """Numpy dtype matching BitsAllocated and PixelRepresentation (little endian)."""
    bits = int(ds.BitsAllocated)
    if bits not in (8, 16, 32):
        raise PixelDataError(getattr(ds, "filename", None), f"cannot write BitsAllocated {bits}")
    kind = "i" if int(ds.PixelRepresentation) == 1 else "u"
    return np.dtype(f"<{kind}{bits // 8}")


def to_stored(ds: Dataset, hu: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """stored = round((HU - intercept) / slope), clipped to the stored range, in the storage dtype."""
    low, high = stored_range(ds)
    values = np.rint((hu.astype(np.float64) - intercept) / slope)
    return np.clip(values, low, high).astype(storage_dtype(ds))
