"""Strength control (0 = input unchanged, 1 = model output, a linear blend in HU) in every entry point,
and how outputs name the model: "CLIP" only for a model whose encoder weights are CLIP's."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor

from ctdenoise.cli import main
from ctdenoise.errors import ConfigError
from ctdenoise.io import read_volume
from ctdenoise.jobs.overlap import denoise_while_writing
from ctdenoise.model import CLIPDenoiser, ModelConfig
from ctdenoise.registry import encoder_provenance, model_description
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.options import DEFAULT_STRENGTH
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.transforms import DenoiseSlices, DenoiseSlicesd

CPU = InferenceSettings(device="cpu")


class Refuses(torch.nn.Module):
    """A model that must not be run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the model ran at strength 0")


@pytest.fixture(scope="module")
def hu() -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:32, :40]
    clean = np.where((yy - 16) ** 2 + (xx - 20) ** 2 < 12**2, 40.0, -1000.0)
    return np.stack([clean + rng.normal(0, 30, clean.shape) for _ in range(2)]).astype(np.float32)


def test_strength_zero_returns_the_input_exactly_without_running_the_model(hu):
    done: list[int] = []
    out = denoise_hu(Refuses(), hu, replace(CPU, strength=0.0), progress=done.append)
    np.testing.assert_array_equal(out, hu)
    assert sum(done) == hu.shape[0]


def test_strength_blends_linearly_in_hu(tiny_model, hu):
    full = denoise_hu(tiny_model, hu, replace(CPU, strength=1.0))
    assert np.abs(full - hu).max() > 1.0  # the model changes the image, so the blend can be told apart
    for strength in (0.25, 0.8):
        blended = denoise_hu(tiny_model, hu, replace(CPU, strength=strength))
        np.testing.assert_allclose(blended, hu + strength * (full - hu), atol=2e-3)


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), "0.5"])
def test_strength_outside_zero_to_one_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="strength"):
        InferenceSettings(strength=bad)


def test_transforms_take_the_strength_and_default_to_the_shared_constant(tiny_model, hu):
    volume = MetaTensor(torch.from_numpy(np.moveaxis(hu, 0, -1).copy())[None])
    assert DenoiseSlices(tiny_model, settings=CPU).settings.strength == DEFAULT_STRENGTH
    half = DenoiseSlices(tiny_model, settings=CPU, strength=0.5)(volume)
    expected = denoise_hu(tiny_model, hu, replace(CPU, strength=0.5))
    np.testing.assert_allclose(half.numpy()[0], np.moveaxis(expected, 0, -1), atol=1e-3)
    mapped = DenoiseSlicesd(keys="image", model=tiny_model, settings=CPU, strength=0.5)({"image": volume})
    np.testing.assert_allclose(mapped["image"].numpy(), half.numpy(), atol=1e-3)
    with pytest.raises(ConfigError, match="strength"):
        DenoiseSlices(tiny_model, settings=CPU, strength=2.0)


def test_overlapped_write_path_applies_the_strength(tiny_model, build_series, tmp_path):
    volume = read_volume(build_series([0.0, 5.0], source="CT_small.dcm"))
    settings = replace(CPU, strength=0.3)

    def write(out: np.ndarray, slice_ready) -> np.ndarray:
        slice_ready(out.shape[0] - 1)
        return out.copy()

    written = denoise_while_writing(tiny_model, volume, settings, write)
    np.testing.assert_allclose(written, denoise_hu(tiny_model, volume.hu, settings), atol=1e-3)


def test_cli_strength_outside_zero_to_one_is_a_usage_error_naming_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", str(tmp_path), "-o", str(tmp_path / "out"), "--strength", "1.5"])
    assert exit_info.value.code == 2
    assert "--strength" in capsys.readouterr().err


def test_cli_strength_reaches_pixels_report_and_derivation_description(build_series, tiny_checkpoint, tmp_path):
    series = build_series([0.0, 5.0], source="CT_small.dcm")
    outputs = {}
    for strength in ("0", "0.5"):
        out = tmp_path / f"out{strength}"
        assert main(["denoise", str(series), "-o", str(out), "--model", str(tiny_checkpoint), "--device", "cpu",
                     "--strength", strength]) == 0
        outputs[strength] = out
    source = read_volume(series)
    def series_folder(out):
        return out / json.loads((out / "report.json").read_text())["series"][0]["output"]

    unchanged = read_volume(series_folder(outputs["0"]))
    slope = float(source.dicom_datasets[0].RescaleSlope)
    assert np.abs(unchanged.hu - source.hu).max() <= slope / 2 + 1e-3  # strength 0: the stored values return

    same = json.loads((outputs["0"] / "report.json").read_text())["series"][0]
    assert same["noise_hu_after"] == pytest.approx(same["noise_hu_before"], abs=0.05)  # nothing changed
    report = json.loads((outputs["0.5"] / "report.json").read_text())
    entry = report["series"][0]
    assert entry["strength"] == 0.5
    assert entry["noise_hu_before"] == same["noise_hu_before"] > 0
    assert "noise_hu_after" in entry  # may be None: the untrained tiny model's output holds no soft tissue
    first = pydicom.dcmread(sorted(series_folder(outputs["0.5"]).glob("*.dcm"))[0])
    assert first.DerivationDescription.endswith("strength 0.5")
    assert "(encoder: random init, trained)" not in first.DerivationDescription  # tiny_model's encoder is frozen
    assert "(encoder: random init, frozen)" in first.DerivationDescription
    assert "CLIP" not in first.DerivationDescription.replace("CLIPDenoising-architecture", "")
    assert "CLIP" not in first.SeriesDescription
    assert "s=0.5" in first.SeriesDescription


def test_outputs_call_a_model_clip_only_when_its_encoder_weights_are_clips(tiny_model):
    assert encoder_provenance(tiny_model) == "random init, frozen"
    trained = CLIPDenoiser.__new__(CLIPDenoiser)  # attributes only: no 20M-parameter initialisation needed
    torch.nn.Module.__init__(trained)
    trained.config = ModelConfig(train_encoder=True)
    trained.encoder_weights_sha256 = None
    assert model_description(trained, "default@0e811f2a5ab0") == (
        "CLIPDenoising-architecture model default@0e811f2a5ab0 (encoder: random init, trained)"
    )
    trained.encoder_weights_sha256 = "ab" * 32
    assert encoder_provenance(trained) == "CLIP RN50 init, trained"
    trained.config = ModelConfig(train_encoder=False)
    assert encoder_provenance(trained) == "CLIP RN50 weights, frozen"
    assert model_description(torch.nn.Conv2d(1, 1, 1), "redcnn@1234") == "model redcnn@1234"


def test_shipped_default_model_is_not_called_clip():
    from ctdenoise.registry import model_label, resolve_model_dir

    config = json.loads((resolve_model_dir() / "config.json").read_text())
    model = CLIPDenoiser.__new__(CLIPDenoiser)
    torch.nn.Module.__init__(model)
    model.config = ModelConfig(train_encoder=config["architecture"]["train_encoder"])
    model.encoder_weights_sha256 = config["encoder"]["weights_sha256"]
    text = model_description(model, model_label())
    loaded_clip = config["encoder"]["weights_sha256"] is not None
    assert ("CLIP" in text.replace("CLIPDenoising-architecture", "")) == loaded_clip
    assert ("random init" in text) != loaded_clip
