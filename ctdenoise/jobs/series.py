"""Denoising one series: read it, denoise it while its files are written, publish it atomically.

This is the unit of work of every run: the folder batch (:mod:`ctdenoise.jobs.runner`), each torchrun
rank (:mod:`ctdenoise.jobs.sharding`) and the DICOM node (:mod:`ctdenoise.serve.derive`) call
:func:`denoise_series`, so a series gets the same pixels and the same provenance whichever way it came.
What stays fixed for a run (the prepared model, its label, the settings, output format, compression and,
for the node, a rule for derived UIDs) is a :class:`Derivation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctdenoise.io import DicomOutput, SeriesRef, Volume, atomic_write_dir, read_volume, write_volume
from ctdenoise.io.uids import derivation_key, derived_uid_for
from ctdenoise.jobs.overlap import denoise_while_writing
from ctdenoise.noise_estimate import noise_hu_local_std_mode
from ctdenoise.registry import derived_series_texts
from ctdenoise.runtime.prepare import PreparedModel, resolve_backend
from ctdenoise.runtime.settings import InferenceSettings, resolve_strength
from ctdenoise.strength_table import StrengthTable


@dataclass(frozen=True)
class Derivation:
    """How a run derives its series: the prepared ``model`` (:func:`ctdenoise.runtime.prepare.prepare`, done
    once per run; its settings, and its label and provenance for the texts of
    :func:`ctdenoise.registry.derived_series_texts`), the
    ``output_format`` (same|dicom|nifti|nrrd|mha), the lossless DICOM ``compression``, ``derived_uid``:
    a function from a source UID to its derived UID, or None for the rule of
    :mod:`ctdenoise.io.uids` (the same source, model and pixel-changing settings give the same
    UIDs, with a strength table's strength resolved per series), ``write_unchanged``: also write a series
    for which a strength table chose strength 0 (an unchanged copy; by default nothing is written for it),
    and ``io_workers``: the processes that decode and encode a DICOM series' files
    (:func:`ctdenoise.io.pool.resolve_workers`; None: one per available core, 1: in this process)."""

    model: PreparedModel
    output_format: str = "same"
    compression: str = "none"
    derived_uid: Callable[[str], str] | None = None
    io_workers: int | None = None
    write_unchanged: bool = False


@dataclass(frozen=True)
class DenoisedSeries:
    """A published series: its ``files`` (under the target folder), its number of ``slices``, the
    ``strength`` it was denoised with (the settings' number, or the strength table's for this series) and
    its estimated noise in HU before and after denoising (:func:`ctdenoise.noise_estimate.noise_hu_local_std_mode`,
    rounded to 0.01 HU; None when the series has too little soft tissue). ``left_unchanged``: a strength
    table chose 0 for it and nothing was written (``files`` is empty)."""

    files: list[Path]
    slices: int
    strength: float
    noise_hu_before: float | None
    noise_hu_after: float | None
    left_unchanged: bool = False


def denoise_series(
    ref: SeriesRef,
    target: Path,
    derivation: Derivation,
    *,
    overwrite: bool = False,
    read: Callable[[SeriesRef], Volume] | None = None,
    progress: Callable[[int], None] | None = None,
) -> DenoisedSeries:
    """Read the series ``ref`` (with ``read``, default :func:`ctdenoise.io.read_volume` with the derivation's
    ``io_workers``), denoise it while
    writing the finished slices (:func:`ctdenoise.jobs.overlap.denoise_while_writing`) and publish it as the
    folder ``target`` in one rename (:func:`ctdenoise.io.atomic_write_dir`; a non-empty ``target`` is
    replaced only with ``overwrite``). DICOM output is the derived series' files in ``target``; an image
    file is ``target/<target name>.<ext>``. A strength table (strength "auto") is resolved for this series
    from its estimated noise (:func:`ctdenoise.runtime.settings.resolve_strength`), and the number is what the
    provenance texts and the derived UIDs (:mod:`ctdenoise.io.uids`) record; when the table
    chooses 0, nothing is written unless the derivation's ``write_unchanged`` says so (the result says
    ``left_unchanged``). Any error (reading, computing, writing) leaves ``target`` as it was and is raised;
    ``progress(slices)`` is called after each batch of slices and may raise to stop."""
    target = Path(target)
    volume = read(ref) if read is not None else read_volume(ref, workers=derivation.io_workers)
    noise_before = noise_hu_local_std_mode(volume.hu)
    model = derivation.model
    settings = resolve_strength(model.settings, volume.hu, noise_before)
    chosen_zero = isinstance(model.settings.strength, StrengthTable) and settings.strength == 0
    if chosen_zero and not derivation.write_unchanged:
        return DenoisedSeries([], int(volume.hu.shape[0]), 0.0, _rounded(noise_before), _rounded(noise_before),
                              left_unchanged=True)
    with atomic_write_dir(target, overwrite=overwrite) as staging:
        suffix, description = derived_series_texts(model.network, model.label, settings.resolved_strength)
        is_dicom_output = derivation.output_format == "dicom" or (
            derivation.output_format == "same" and bool(volume.dicom_datasets))
        derived_uid = derivation.derived_uid or derived_uid_rule(model.label, settings)
        dicom = DicomOutput(suffix, description, derived_uid=derived_uid, compression=derivation.compression,
                            workers=derivation.io_workers)
        noise_after: list[float | None] = []

        def write(hu: np.ndarray, slice_ready: Callable[[int], None]) -> list[Path]:
            written = write_volume(
                volume,
                hu,
                staging if is_dicom_output else staging / target.name,
                format=derivation.output_format,
                slice_ready=slice_ready,
                dicom=dicom,
            )
            noise_after.append(noise_hu_local_std_mode(hu))  # every slice is final once write_volume returned
            return written

        written = denoise_while_writing(model, volume, settings, write, progress)
    return DenoisedSeries(
        files=[target / path.relative_to(staging) for path in written],
        slices=int(volume.hu.shape[0]),
        strength=settings.resolved_strength,
        noise_hu_before=_rounded(noise_before),
        noise_hu_after=_rounded(noise_after[0]),
    )


def derived_uid_rule(model_label: str, settings: InferenceSettings) -> Callable[[str], str]:
    """The derived UID of each source UID when ``model_label`` runs with ``settings`` (a number as strength):
    :func:`ctdenoise.io.uids.derived_uid_for` of the derivation's key, the backend resolved
    (:func:`ctdenoise.io.uids.derivation_key`)."""
    return derived_uid_for(derivation_key(model_label, strength=settings.resolved_strength, precision=settings.precision,
                                          backend=resolve_backend(settings)))


def _rounded(noise_hu: float | None) -> float | None:
    return None if noise_hu is None else round(noise_hu, 2)
