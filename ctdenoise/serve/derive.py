"""Denoising one spooled series into its derived series, with UIDs that do not change when it is re-done.

The reading, denoising and write-back are the ones ``ctdenoise denoise`` uses (:func:`ctdenoise.io.find_series`,
:func:`ctdenoise.io.read_volume`, :func:`ctdenoise.jobs.overlap.denoise_while_writing`,
:func:`ctdenoise.io.write_derived_dicom`). What the node adds: the derived SOP Instance and Series
Instance UIDs are computed from the source UIDs and the derivation (model and the settings that change
the pixels), so a series re-done after a crash, or received again, gets the UIDs of the first attempt and
a PACS stores it over the first copy instead of showing it twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from pydicom.uid import generate_uid

from ctdenoise.inference import InferenceSettings, prepare_for_settings
from ctdenoise.io import atomic_write_dir, find_series, read_volume, write_derived_dicom
from ctdenoise.jobs.overlap import denoise_while_writing
from ctdenoise.registry import derived_series_texts


def derivation_key(model_label: str, settings: InferenceSettings) -> str:
    """What identifies a derivation: the model (name and weights hash) and the settings that change pixels
    (strength, precision, backend)."""
    return json.dumps({"model": model_label, "strength": settings.strength, "precision": settings.precision,
                       "backend": settings.backend}, sort_keys=True)


def derived_uid_for(key: str) -> Callable[[str], str]:
    """The function mapping a source UID to its derived UID under derivation ``key`` (a pure function:
    the same source UID and key always give the same UID, different ones give different UIDs)."""
    def derived_uid(source_uid: str) -> str:
        return generate_uid(entropy_srcs=[key, source_uid])

    return derived_uid


class SeriesDenoiser:
    """Denoises spooled series with ``model`` (labelled ``model_label`` in the outputs), prepared once for
    ``settings`` when the denoiser is made, so a model that cannot run fails before the node listens."""

    def __init__(self, model: torch.nn.Module, model_label: str, settings: InferenceSettings) -> None:
        self.runner = prepare_for_settings(model, settings)
        self.settings = settings
        self.derived_uid = derived_uid_for(derivation_key(model_label, settings))
        self.series_description_suffix, self.derivation_description = derived_series_texts(
            model, model_label, settings.strength)

    def __call__(self, instances: Path, out_dir: Path) -> int:
        """Denoise every series found in the folder ``instances`` and publish the derived files atomically as
        the folder ``out_dir`` (one sub-folder per source series or Enhanced CT file); return their number.
        Errors of the input are raised as :class:`ctdenoise.errors.CTDenoiseError`."""
        refs = find_series(instances)
        count = 0
        with atomic_write_dir(out_dir, overwrite=True) as staging:
            for k, ref in enumerate(refs):
                volume = read_volume(ref)

                def write(hu, slice_ready, volume=volume, part=staging / f"part{k:03d}"):
                    return write_derived_dicom(
                        volume, hu, part, slice_ready=slice_ready, derived_uid=self.derived_uid,
                        series_description_suffix=self.series_description_suffix,
                        derivation_description=self.derivation_description,
                    )

                count += len(denoise_while_writing(self.runner, volume, self.settings, write))
        return count
