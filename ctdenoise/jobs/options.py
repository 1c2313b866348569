"""What a batch run is asked to do besides its inputs, OUTDIR and model: one object for the folder batch
(:mod:`~ctdenoise.jobs.batch`), a ``torchrun`` rank's share (:mod:`~ctdenoise.jobs.sharding`) and the job
loop they share (:mod:`~ctdenoise.jobs.runner`), so the three cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from ctdenoise.jobs.interrupt import StopSignals
from ctdenoise.jobs.report import SeriesResult
from ctdenoise.runtime.settings import InferenceSettings


@dataclass(frozen=True)
class BatchOptions:
    """How every series of a run is denoised and written, and what the run reports while it goes.

    * ``settings``: device, backend, precision, strength, ... (:class:`ctdenoise.runtime.settings.InferenceSettings`);
    * ``output_format``: ``same`` (DICOM in, derived DICOM out; a volume file in, the same format out),
      ``dicom``, ``nifti``, ``nrrd`` or ``mha``;
    * ``compression`` (none|rle|jpeg-ls|jpeg2000): derived DICOM pixels encoded losslessly (image files ignore it);
    * ``overwrite``: redo every series, published or not;
    * ``if_changed``: a published series whose input changed since is redone (``redo``) or only reported
      as "changed" (``report``);
    * ``write_unchanged``: also write a series for which a strength table chose strength 0 (by default it is
      reported "unchanged" and nothing is written);
    * ``io_workers``: the processes that read and write each DICOM series' files (None: one per core);
    * ``stop``: checked before each series and after each batch of slices (:mod:`ctdenoise.jobs.interrupt`);
    * ``on_start(series, slices)``: called once with the work to do; ``progress(slices)``: after each batch
      of slices; ``on_series_done(result)``: after each series' result is in the report.
    """

    settings: InferenceSettings = InferenceSettings()
    output_format: str = "same"
    compression: str = "none"
    overwrite: bool = False
    if_changed: str = "redo"
    write_unchanged: bool = False
    io_workers: int | None = None
    stop: StopSignals | None = None
    on_start: Callable[[int, int], None] | None = None
    progress: Callable[[int], object] | None = None
    on_series_done: Callable[[SeriesResult], None] | None = None

    def stop_immediately(self) -> AbstractContextManager[None]:
        """A block in which a stop raises at once (:meth:`StopSignals.immediate`: while nothing is being
        written, e.g. looking for series); a plain block when the run has no ``stop``."""
        return self.stop.immediate() if self.stop is not None else nullcontext()
