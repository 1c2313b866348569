"""Derived DICOM series written to files: the denoised HU as the source's stored values, encoded, saved.

The header of each derived object comes from :mod:`ctdenoise.io.derived_header` (what is new, what is kept);
this module adds the pixels. They keep the source's BitsAllocated/BitsStored/PixelRepresentation and
rescale; files are written in Explicit VR Little Endian, or with ``compression`` in a lossless compressed
syntax (:data:`COMPRESSION_SYNTAXES`), through pydicom's encoders, which decode to exactly the same stored
values (JPEG-LS holds signed pixels at BitsStored = BitsAllocated, so that viewers which do not sign-extend
show them right).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from ctdenoise.errors import OutputError
from ctdenoise.io.atomic import atomic_write_dir, refuse_inputs
from ctdenoise.io.derived_header import (
    DerivedSeries,
    derivation_time,
    derived_classic_header,
    derived_enhanced_header,
    derived_series_number,
)
from ctdenoise.io.dicom_pixels import to_stored
from ctdenoise.io.dicom_read import enhanced_frame_order, enhanced_frame_rescale
from ctdenoise.io.pool import map_files
from ctdenoise.io.uids import new_uid
from ctdenoise.io.volume import Volume

COMPRESSION_SYNTAXES = {
    "none": ExplicitVRLittleEndian,
    "rle": pydicom.uid.RLELossless,
    "jpeg-ls": pydicom.uid.JPEGLSLossless,
    "jpeg2000": pydicom.uid.JPEG2000Lossless,
}
"""``compression`` choices of :class:`DicomOutput` and their (lossless) transfer syntaxes."""


@dataclass(frozen=True)
class DicomOutput:
    """How a derived DICOM series is written (:func:`write_derived_dicom`).

    ``series_description_suffix`` is added to the source's SeriesDescription; ``derivation_description``
    says what was done (DerivationDescription). ``series_number`` defaults to
    :func:`~ctdenoise.io.derived_header.derived_series_number`. ``derived_uid(source_uid)``, when given,
    returns the UID of the derived object for a source SOPInstanceUID and the derived SeriesInstanceUID for
    the source SeriesInstanceUID (instead of new random UIDs; :func:`ctdenoise.io.uids.derived_uid_for`), so
    that writing the same derivation again gives the same UIDs. ``compression`` (a key of
    :data:`COMPRESSION_SYNTAXES`: none, rle, jpeg-ls, jpeg2000) encodes the pixels losslessly with pydicom's
    encoders. ``workers``: the processes that build, encode and save classic slices
    (:func:`ctdenoise.io.pool.map_files`; None: one per available core, 1: in this thread)."""

    series_description_suffix: str
    derivation_description: str
    series_number: int | None = None
    derived_uid: Callable[[str], str] | None = None
    compression: str = "none"
    workers: int | None = None


@dataclass(frozen=True)
class _SliceWrite:
    """One classic slice for a worker: its source, HU and padding mask, header values, encoding and path."""

    source: Dataset
    hu: np.ndarray
    padding: np.ndarray | None
    series: DerivedSeries
    instance_uid: str
    compression: str
    path: Path


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


def _classic_dataset(task: _SliceWrite) -> Dataset:
    ds = derived_classic_header(task.source, task.series, task.instance_uid)
    slope = float(task.source.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(task.source.get("RescaleIntercept", 0.0) or 0.0)
    stored = to_stored(task.source, task.hu, slope, intercept)
    if task.padding is not None:
        stored[task.padding] = int(task.source.PixelPaddingValue)
    _set_pixels(ds, stored, task.compression)
    return ds


def _write_classic_slice(task: _SliceWrite) -> None:
    """Build one derived slice and save it to its path."""
    _classic_dataset(task).save_as(task.path, enforce_file_format=True)


def _classic_slice_writes(
    volume: Volume, sources: list[Dataset], hu: np.ndarray, series: DerivedSeries, output: DicomOutput,
    wait_for: Callable[[int], None], paths: list[Path],
) -> Iterator[_SliceWrite]:
    """The write of each derived slice of ``volume`` (its source Datasets ``sources``) in slice order, slice
    ``k``'s made only once ``wait_for(k)`` returned."""
    masks = volume.padding_mask
    for k, source in enumerate(sources):
        wait_for(k)
        yield _SliceWrite(source, hu[k], None if masks is None else masks[k], series,
                          _object_uid(source, output.derived_uid), output.compression, paths[k])


def _enhanced_dataset(source: Dataset, volume: Volume, hu: np.ndarray, series: DerivedSeries, instance_uid: str,
                      compression: str) -> Dataset:
    ds = derived_enhanced_header(source, series, instance_uid)
    order = enhanced_frame_order(source, volume.source_path)
    frames = np.empty(hu.shape, dtype=np.float32)
    frames[order] = hu  # back to the source frame order, so the functional groups still match
    padding = None
    if volume.padding_mask is not None:
        padding = np.zeros(hu.shape, dtype=bool)
        padding[order] = volume.padding_mask
    stored = np.stack([
        to_stored(source, frames[f], *enhanced_frame_rescale(source, f)) for f in range(len(frames))
    ])
    if padding is not None:
        stored[padding] = int(source.PixelPaddingValue)
    _set_pixels(ds, stored, compression)
    return ds


def _object_uid(source: Dataset, derived_uid: Callable[[str], str] | None) -> str:
    """The SOPInstanceUID of the object derived from ``source``: ``derived_uid``'s, else a new one."""
    return derived_uid(str(source.SOPInstanceUID)) if derived_uid is not None else new_uid()


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


def _check_writable(volume: Volume, hu: np.ndarray, out_dir: Path) -> list[Dataset]:
    """The source Datasets of ``volume``; OutputError when it is not DICOM, ``hu`` does not fit it or ``out_dir``
    is one of its inputs."""
    sources = volume.dicom_datasets
    if not sources:
        raise OutputError(out_dir, f"the source {volume.source_path} is not DICOM; write NIfTI/NRRD instead")
    if np.shape(hu) != volume.hu.shape:
        raise OutputError(out_dir, f"HU array has shape {np.shape(hu)}, the source volume has {volume.hu.shape}")
    inputs = [volume.source_path] + [Path(ds.filename) for ds in sources if getattr(ds, "filename", None)]
    refuse_inputs(out_dir, inputs)
    return sources


def write_derived_dicom(
    volume: Volume,
    hu: np.ndarray,
    out_dir: Path,
    output: DicomOutput,
    *,
    overwrite: bool = False,
    slice_ready: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write ``hu`` as a derived DICOM series of ``volume``'s source into the folder ``out_dir``, as
    ``output`` says (:class:`DicomOutput`), with the headers of :mod:`ctdenoise.io.derived_header`.

    Classic CT gives one file per slice (``IM00001.dcm``, ... in slice order); Enhanced CT gives
    one multi-frame file (``IM00001.dcm``) with its functional groups, frames in the source order.
    The folder is published atomically; it must not exist, be empty, or ``overwrite`` must be
    True, and it may not be or contain an input file (OutputError). Returns the written paths.
    OutputError, before anything is written, when ``output.compression`` is unknown, or its encoder's plugin
    is missing or cannot encode the source's pixel layout.

    ``slice_ready(k)``, when given, is called before slice ``k`` of ``hu`` is first read (before the
    whole array for Enhanced CT) and may block until that slice has been computed: the files are then
    written while ``hu`` is still being filled (:mod:`ctdenoise.jobs.overlap`).

    Classic slices are built, encoded and saved by ``output.workers`` processes, slice ``k`` handed to them
    as soon as ``slice_ready(k)`` returned and at most two slices per worker at a time; the files are the
    same bytes for every ``workers`` (given ``output.derived_uid``; random UIDs differ from run to run anyway).
    """
    out_dir = Path(out_dir)
    if output.compression not in COMPRESSION_SYNTAXES:
        raise OutputError(out_dir, f"unknown compression {output.compression!r}; use one of {', '.join(COMPRESSION_SYNTAXES)}")
    sources = _check_writable(volume, hu, out_dir)
    _check_encoder(output.compression, sources[0], out_dir)
    hu = np.asarray(hu, dtype=np.float32)
    wait_for = slice_ready or (lambda _k: None)
    first = sources[0]
    series = DerivedSeries(
        series_uid=output.derived_uid(str(first.SeriesInstanceUID)) if output.derived_uid is not None else new_uid(),
        series_number=(output.series_number if output.series_number is not None
                       else derived_series_number(first, output.derivation_description)),
        description_suffix=output.series_description_suffix,
        derivation_description=output.derivation_description,
        created=derivation_time(first),
    )
    if volume.source_format == "dicom-enhanced":
        wait_for(hu.shape[0] - 1)
        enhanced = _enhanced_dataset(first, volume, hu, series, _object_uid(first, output.derived_uid), output.compression)
        with atomic_write_dir(out_dir, overwrite=overwrite) as staging:
            enhanced.save_as(staging / "IM00001.dcm", enforce_file_format=True)
        return [out_dir / "IM00001.dcm"]
    names = [f"IM{k + 1:05d}.dcm" for k in range(len(sources))]
    with atomic_write_dir(out_dir, overwrite=overwrite) as staging:
        writes = _classic_slice_writes(volume, sources, hu, series, output, wait_for, [staging / name for name in names])
        for _ in map_files(_write_classic_slice, writes, count=len(names), workers=output.workers):
            pass
    return [out_dir / name for name in names]
