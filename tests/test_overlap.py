"""Compute/write overlap within one series (ctdenoise.jobs.overlap): the writer only reads finished slices,
and a failure on either side stops the other and is raised."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ctdenoise.errors import OutputError
from ctdenoise.io import Volume
from ctdenoise.jobs.overlap import ComputeAborted, SliceGate, denoise_while_writing
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.prepare import PreparedModel, prepare
from ctdenoise.runtime.settings import InferenceSettings

SETTINGS = InferenceSettings(device="cpu", precision="fp32", batch_size=1, backend="torch")


class SlowHalf(torch.nn.Module):
    """Halves its input after a pause, so the writer thread runs while batches are still computed."""

    def __init__(self, fail_at_call: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at_call = fail_at_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise RuntimeError("model failed")
        time.sleep(0.02)
        return x * 0.5


def runner(module: torch.nn.Module) -> PreparedModel:
    return prepare(module, SETTINGS)


def volume(slices: int = 8) -> Volume:
    hu = np.random.default_rng(0).normal(0, 300, (slices, 16, 16)).astype(np.float32)
    return Volume(hu=hu, spacing=(1.0, 1.0, 1.0), affine=np.eye(4), source_path=Path("synthetic.nii"),
                  source_format="nifti", dicom_datasets=None, description="synthetic")


def test_writer_sees_each_slice_only_once_it_is_final_and_the_result_matches_plain_denoising():
    vol = volume()
    seen: list[np.ndarray] = []

    def write(hu: np.ndarray, slice_ready) -> str:
        for k in range(hu.shape[0]):
            slice_ready(k)
            seen.append(hu[k].copy())
        return "written"

    done: list[int] = []
    assert denoise_while_writing(runner(SlowHalf()), vol, SETTINGS, write, done.append) == "written"
    expected = denoise_hu(runner(SlowHalf()), vol.hu, SETTINGS)
    np.testing.assert_array_equal(np.stack(seen), expected)
    assert sum(done) == vol.hu.shape[0]


def test_a_failed_computation_stops_the_writer_and_is_raised():
    writer_errors: list[BaseException] = []

    def write(hu: np.ndarray, slice_ready) -> None:
        try:
            for k in range(hu.shape[0]):
                slice_ready(k)
        except ComputeAborted as error:
            writer_errors.append(error)
            raise

    with pytest.raises(RuntimeError, match="model failed"):
        denoise_while_writing(runner(SlowHalf(fail_at_call=3)), volume(), SETTINGS, write)
    assert len(writer_errors) == 1 and "slice 2" in str(writer_errors[0])


def test_a_failed_writer_stops_the_computation_early_and_its_error_is_raised(tmp_path):
    model = SlowHalf()

    def write(hu: np.ndarray, slice_ready) -> None:
        slice_ready(1)
        raise OutputError(tmp_path, "disk full")

    prepared = runner(model)
    with pytest.raises(OutputError, match="disk full"):
        denoise_while_writing(prepared, volume(slices=40), SETTINGS, write)
    assert prepared.network.calls < 40


def test_slice_gate_releases_waiters_in_order_and_refuses_after_abort():
    gate = SliceGate()
    gate.advance(2)
    gate.wait_for(1)  # already final: returns at once
    gate.abort()
    gate.wait_for(0)
    with pytest.raises(ComputeAborted):
        gate.wait_for(2)
