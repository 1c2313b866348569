"""Checkpoints: safetensors + config.json, bit-identical round trips, hashes, never unpickling."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ctdenoise.errors import CheckpointError, ConfigError
from ctdenoise.model import CLIPDenoiser, ModelConfig, ResolvedWeights, export_half, load_checkpoint, save_checkpoint
from ctdenoise.model.weights import encoder_weights_sha256


def _random_clip_weights(seed: int) -> ResolvedWeights:
    """Encoder weights as resolve_clip_weights returns them, with random values instead of CLIP's."""
    torch.manual_seed(seed)
    tensors = {k: v for k, v in CLIPDenoiser().encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
    for key, tensor in tensors.items():
        if key.endswith(("running_var", ".weight")) and tensor.ndim == 1:  # BatchNorm scales and variances
            tensor.uniform_(0.5, 1.0)
        elif key.endswith(("running_mean", ".bias")):
            tensor.normal_(0.0, 0.1)
    return ResolvedWeights(tensors, encoder_weights_sha256(tensors), f"test weights seed {seed}", "RN50")


@pytest.fixture(scope="module")
def clip_weights() -> ResolvedWeights:
    return _random_clip_weights(seed=7)


@pytest.fixture(scope="module")
def trained_model(clip_weights: ResolvedWeights) -> CLIPDenoiser:
    torch.manual_seed(3)
    model = CLIPDenoiser(ModelConfig())
    model.load_encoder_weights(clip_weights)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 1, 96, 80, generator=torch.Generator().manual_seed(5))


def _output(model: CLIPDenoiser, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(image)


def test_round_trip_with_encoder_is_bit_identical_and_self_contained(
    trained_model: CLIPDenoiser, image: torch.Tensor, tmp_path: Path
) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt", training_summary={"iterations": 40000, "loss": "L1"})
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(_output(loaded, image), _output(trained_model, image))
    assert not loaded.training
    assert loaded.encoder_weights_sha256 == trained_model.encoder_weights_sha256


def test_round_trip_without_encoder_needs_the_same_clip_weights(
    trained_model: CLIPDenoiser, clip_weights: ResolvedWeights, image: torch.Tensor, tmp_path: Path
) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt", include_encoder=False)
    assert (tmp_path / "ckpt" / "model.safetensors").stat().st_size < 50e6  # 11 M float32, no encoder
    loaded = load_checkpoint(tmp_path / "ckpt", encoder_weights=clip_weights)
    assert torch.equal(_output(loaded, image), _output(trained_model, image))


def test_referenced_encoder_can_come_from_a_weight_file(
    trained_model: CLIPDenoiser, clip_weights: ResolvedWeights, image: torch.Tensor, tmp_path: Path
) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt", include_encoder=False)
    weight_file = tmp_path / "RN50.safetensors"
    save_file({f"visual.{k}": v for k, v in clip_weights.state_dict.items()}, str(weight_file))
    loaded = load_checkpoint(tmp_path / "ckpt", encoder_weights=weight_file)
    assert torch.equal(_output(loaded, image), _output(trained_model, image))


def test_other_clip_weights_than_the_recorded_ones_are_refused(trained_model: CLIPDenoiser, tmp_path: Path) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt", include_encoder=False)
    other = _random_clip_weights(seed=8)
    with pytest.raises(CheckpointError, match=rf"trained on CLIP RN50 weights with sha256 {trained_model.encoder_weights_sha256}"):
        load_checkpoint(tmp_path / "ckpt", encoder_weights=other)


def test_config_records_what_a_model_card_needs(trained_model: CLIPDenoiser, tmp_path: Path) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt", training_summary={"iterations": 10})
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["architecture"]["encoder_name"] == "RN50"
    assert config["encoder"]["weights_sha256"] == trained_model.encoder_weights_sha256
    assert config["encoder"]["weights_origin"] == "test weights seed 7"
    assert config["normalisation"] == "(HU+1024)/4096 clip [-1024,3072]"
    assert config["training_summary"] == {"iterations": 10}
    assert config["parameters"]["trainable"] == 10_989_828
    assert len(config["tensors"]["sha256"]) == 64


def test_half_checkpoint_is_smaller_and_keeps_the_encoder_hash_verifiable(
    trained_model: CLIPDenoiser, image: torch.Tensor, tmp_path: Path
) -> None:
    save_checkpoint(trained_model, tmp_path / "full")
    save_checkpoint(trained_model, tmp_path / "half", half=True)
    full_size = (tmp_path / "full" / "model.safetensors").stat().st_size
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < 0.8 * full_size
    loaded = load_checkpoint(tmp_path / "half")  # verifies the carried encoder's hash
    assert torch.equal(loaded.encoder.conv1.weight, trained_model.encoder.conv1.weight)  # not fp16-exact: kept
    expected = _output(trained_model, image)
    assert torch.allclose(_output(loaded, image), expected, rtol=0, atol=1e-2 * float(expected.abs().max()))


def test_export_half_stores_every_tensor_in_float16_and_keeps_the_summary(image: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(3)
    trained_model = CLIPDenoiser(ModelConfig(train_encoder=True)).eval()  # encoder values not fp16-exact
    save_checkpoint(trained_model, tmp_path / "run", training_summary={"iterations": 3})
    export_half(tmp_path / "run", tmp_path / "shipped")
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "shipped" / "model.safetensors"))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    config = json.loads((tmp_path / "shipped" / "config.json").read_text())
    assert config["training_summary"] == {"iterations": 3} and config["tensors"]["half"] is True
    expected = _output(trained_model, image)
    exported = _output(load_checkpoint(tmp_path / "shipped"), image)
    assert torch.allclose(exported, expected, rtol=0, atol=1e-2 * float(expected.abs().max()))


def test_tampered_tensor_file_is_refused(trained_model: CLIPDenoiser, tmp_path: Path) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt")
    tensors = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0x01
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 .* differs .* modified or corrupted"):
        load_checkpoint(tmp_path / "ckpt")


def test_carried_encoder_that_disagrees_with_the_recorded_hash_is_refused(
    trained_model: CLIPDenoiser, tmp_path: Path
) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt")
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["encoder"]["weights_sha256"] = "0" * 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="the carried encoder has sha256"):
        load_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "weights.bin", "model.pkl", "no_suffix"])
def test_pickle_files_are_refused_without_being_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))
    with pytest.raises(CheckpointError, match="pickle-based checkpoints .* are refused"):
        load_checkpoint(path)


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_checkpoint(tmp_path)


def test_encoder_must_be_carried_when_it_is_random_or_trained(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="random initialisation"):
        save_checkpoint(CLIPDenoiser(), tmp_path / "a", include_encoder=False)
    with pytest.raises(CheckpointError, match="because it was trained"):
        save_checkpoint(CLIPDenoiser(ModelConfig(train_encoder=True)), tmp_path / "b", include_encoder=False)


def test_saving_over_an_existing_checkpoint_leaves_no_temporary_files(trained_model: CLIPDenoiser, tmp_path: Path) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt", include_encoder=False)
    save_checkpoint(trained_model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    load_checkpoint(tmp_path / "ckpt")


# One format for every architecture of the registry (ctdenoise.model.architectures).


def test_the_registry_names_both_architectures_and_builds_them_by_name() -> None:
    from ctdenoise.model import REDCNN, create_model, list_architectures

    assert list_architectures() == ["clipdenoiser", "redcnn"]
    assert isinstance(create_model("redcnn", filters=8), REDCNN) and create_model("redcnn", filters=8).filters == 8
    assert isinstance(create_model("CLIPDenoiser"), CLIPDenoiser)  # any case, as the shipped default names it
    with pytest.raises(ConfigError, match="'unet' is not a known architecture; known: clipdenoiser, redcnn"):
        create_model("unet")


def test_a_redcnn_round_trips_through_the_one_format(image: torch.Tensor, tmp_path: Path) -> None:
    from ctdenoise.model import REDCNN

    torch.manual_seed(0)
    model = REDCNN(filters=8).eval()
    save_checkpoint(model, tmp_path / "redcnn", training_summary={"iterations": 3})
    config = json.loads((tmp_path / "redcnn" / "config.json").read_text())
    assert config["format"] == "ctdenoise-checkpoint" and config["architecture"] == {"name": "redcnn", "filters": 8, "kernel_size": 5}
    assert "encoder" not in config and config["training_summary"] == {"iterations": 3}
    restored = load_checkpoint(tmp_path / "redcnn")
    assert isinstance(restored, REDCNN) and torch.equal(_output(restored, image), _output(model, image))
    with pytest.raises(CheckpointError, match="a redcnn has no CLIP encoder to leave out"):
        save_checkpoint(model, tmp_path / "other", include_encoder=False)


def test_a_redcnn_folder_of_the_earlier_format_loads(image: torch.Tensor, tmp_path: Path) -> None:
    """RED-CNN folders written before RED-CNN shared the format: format ctdenoise-redcnn, no version, no parameters."""
    from ctdenoise.io.hashing import sha256_file
    from ctdenoise.model import REDCNN

    torch.manual_seed(1)
    model = REDCNN(filters=8).eval()
    folder = tmp_path / "old_redcnn"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "format": "ctdenoise-redcnn",
        "architecture": {"name": "redcnn", "filters": 8, "kernel_size": 5},
        "normalisation": "(HU+1024)/4096 clip [-1024,3072]",
        "tensors": {"file": "model.safetensors", "sha256": sha256_file(folder / "model.safetensors")},
        "training_summary": {},
    }))
    assert torch.equal(_output(load_checkpoint(folder), image), _output(model, image))


def test_a_config_without_an_architecture_name_is_a_clipdenoiser(trained_model: CLIPDenoiser, tmp_path: Path) -> None:
    save_checkpoint(trained_model, tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["architecture"]["name"] == "clipdenoiser"
    del config["architecture"]["name"]
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    assert isinstance(load_checkpoint(tmp_path / "ckpt"), CLIPDenoiser)


@pytest.mark.parametrize(("architecture", "message"), [
    ({"name": "unet"}, "'unet' is not a known architecture"),
    ({"name": "redcnn", "filters": 10**6}, "config key 'filters': must be a whole number from 1 to 1024"),
    ({"name": "redcnn", "depth": 3}, "config key 'depth': unknown RED-CNN setting"),
])
def test_an_unknown_architecture_or_setting_names_the_config(tmp_path: Path, architecture: dict, message: str) -> None:
    from ctdenoise.model import REDCNN

    folder = save_checkpoint(REDCNN(filters=8), tmp_path / "redcnn")
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = architecture
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message) as info:
        load_checkpoint(folder)
    assert str(folder / "config.json") in str(info.value)


def test_the_shipped_default_and_a_folder_written_by_0_1_load_as_a_clipdenoiser(tmp_path: Path) -> None:
    import shutil

    from ctdenoise.model import read_checkpoint_config
    from ctdenoise.registry import resolve_model_dir

    directory = resolve_model_dir("default")
    assert isinstance(load_checkpoint(directory), CLIPDenoiser)
    # ctdenoise 0.1 wrote the architecture as "CLIPDenoiser" (the v5 default, adapted models); such folders still load.
    old = tmp_path / "written_by_0_1"
    shutil.copytree(directory, old)
    config = json.loads((old / "config.json").read_text())
    config["architecture"]["name"] = "CLIPDenoiser"
    (old / "config.json").write_text(json.dumps(config))
    assert read_checkpoint_config(old)["architecture"]["name"] == "CLIPDenoiser"
    assert isinstance(load_checkpoint(old), CLIPDenoiser)
