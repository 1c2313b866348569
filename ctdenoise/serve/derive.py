"""Denoising one spooled series into its derived series, with UIDs that do not change when it is re-done.

Each series is read, denoised and written back by :func:`ctdenoise.jobs.series.denoise_series`, the
function every ``ctdenoise denoise`` run uses, so a series sent to the node gets the pixels and provenance
it gets from ``ctdenoise denoise``. What the node adds: the derived SOP Instance and Series Instance UIDs
are computed from the source UIDs and the derivation (model and the settings that change the pixels), so
a series re-done after a crash, or received again, gets the UIDs of the first attempt and a PACS stores it
over the first copy instead of showing it twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from pydicom.uid import generate_uid

from ctdenoise.inference import InferenceSettings, resolve_backend
from ctdenoise.io import atomic_write_dir, find_series
from ctdenoise.jobs.series import denoise_series, prepare_derivation


def derivation_key(model_label: str, settings: InferenceSettings) -> str:
    """What identifies a derivation: the model (name and weights hash) and the settings that change pixels
    (strength, precision, and the backend that runs: ``auto`` is resolved, :func:`resolve_backend`)."""
    return json.dumps({"model": model_label, "strength": settings.strength, "precision": settings.precision,
                       "backend": resolve_backend(settings)}, sort_keys=True)


def derived_uid_for(key: str) -> Callable[[str], str]:
    """The function mapping a source UID to its derived UID under derivation ``key`` (a pure function:
    the same source UID and key always give the same UID, different ones give different UIDs)."""
    def derived_uid(source_uid: str) -> str:
        return generate_uid(entropy_srcs=[key, source_uid])

    return derived_uid


class SeriesDenoiser:
    """Denoises spooled series with ``model`` (labelled ``model_label`` in the outputs), prepared once for
    ``settings`` when the denoiser is made, so a model that cannot run fails before the node listens;
    ``io_workers`` decode and encode the files (:class:`ctdenoise.jobs.series.Derivation`)."""

    def __init__(self, model: torch.nn.Module, model_label: str, settings: InferenceSettings,
                 io_workers: int | None = None) -> None:
        self.derived_uid = derived_uid_for(derivation_key(model_label, settings))
        self.derivation = prepare_derivation(model, model_label, settings, output_format="dicom",
                                             derived_uid=self.derived_uid, io_workers=io_workers)

    def __call__(self, instances: Path, out_dir: Path) -> int:
        """Denoise every series found in the folder ``instances`` and publish the derived files atomically as
        the folder ``out_dir`` (one sub-folder per source series or Enhanced CT file); return their number.
        Errors of the input are raised as :class:`ctdenoise.errors.CTDenoiseError`."""
        refs = find_series(instances)
        with atomic_write_dir(out_dir, overwrite=True) as staging:
            return sum(len(denoise_series(ref, staging / f"part{k:03d}", self.derivation).files)
                       for k, ref in enumerate(refs))
