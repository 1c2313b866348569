"""Denoising one spooled series into its derived series, with UIDs that do not change when it is re-done.

Each series is read, denoised and written back by :func:`ctdenoise.jobs.series.denoise_series`, the
function every ``ctdenoise denoise`` run uses, so a series sent to the node gets the pixels and provenance
it gets from ``ctdenoise denoise``. The derived SOP Instance and Series Instance UIDs are
computed from the source UIDs and the derivation (:mod:`ctdenoise.io.uids`, the rule of every run),
so a series re-done after a crash, or received again, gets the UIDs of the first attempt and a PACS stores
it over the first copy instead of showing it twice.
"""

from __future__ import annotations

from pathlib import Path

from ctdenoise.io import atomic_write_dir, find_series
from ctdenoise.jobs.series import Derivation, denoise_series
from ctdenoise.runtime.prepare import PreparedModel


class SeriesDenoiser:
    """Denoises spooled series with the prepared ``model`` (:func:`ctdenoise.runtime.prepare.load_prepared`,
    prepared once before the node listens, so a model that cannot run fails first; its label names it in the
    outputs); ``io_workers`` decode and encode the files (:class:`ctdenoise.jobs.series.Derivation`)."""

    def __init__(self, model: PreparedModel, io_workers: int | None = None) -> None:
        self.derivation = Derivation(model, output_format="dicom", io_workers=io_workers)

    def __call__(self, instances: Path, out_dir: Path) -> int:
        """Denoise every series found in the folder ``instances`` and publish the derived files atomically as
        the folder ``out_dir`` (one sub-folder per source series or Enhanced CT file); return their number.
        Errors of the input are raised as :class:`ctdenoise.errors.CTDenoiseError`."""
        refs = find_series(instances)
        with atomic_write_dir(out_dir, overwrite=True) as staging:
            return sum(len(denoise_series(ref, staging / f"part{k:03d}", self.derivation).files)
                       for k, ref in enumerate(refs))
