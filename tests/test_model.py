"""CLIPDenoiser architecture: shapes, parameter counts, frozen encoder, feature augmentation, config."""

from __future__ import annotations

import json

import pytest
import torch

from ctdenoise.errors import ConfigError, ModelError
from ctdenoise.model import CLIPDenoiser, ModelConfig, count_parameters
from ctdenoise.model.denoiser import reflect_pad_to_multiple


@pytest.fixture(scope="module")
def model() -> CLIPDenoiser:
    torch.manual_seed(0)
    return CLIPDenoiser(ModelConfig())


def test_rn50_parameter_counts_match_the_paper(model: CLIPDenoiser) -> None:
    counts = count_parameters(model)
    decoder = sum(p.numel() for p in model.decoder.parameters())
    assert decoder == 10_989_825  # paper: 10.99 M trainable
    assert counts["trainable"] == decoder + 3  # + the 1x1 conv 1->3 without bias
    assert counts["frozen_encoder"] == 8_562_528  # paper: 8.56 M frozen encoder parameters used
    assert counts["total"] == 19_552_356  # paper: 19.55 M


def test_layer4_and_attention_pool_are_not_in_the_model(model: CLIPDenoiser) -> None:
    names = [name for name, _ in model.named_modules()]
    assert not any("layer4" in n or "attnpool" in n for n in names)


@pytest.mark.parametrize("height, width", [(64, 64), (96, 80), (33, 47), (5, 3), (1, 40)])
def test_output_has_the_input_shape_for_any_size(model: CLIPDenoiser, height: int, width: int) -> None:
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, height, width))
    assert out.shape == (2, 1, height, width)
    assert torch.isfinite(out).all()


def test_reflect_padding_reaches_a_multiple_of_32_and_keeps_the_image_at_the_top_left() -> None:
    x = torch.arange(5 * 3, dtype=torch.float32).reshape(1, 1, 5, 3)
    padded = reflect_pad_to_multiple(x, 32)
    assert padded.shape == (1, 1, 32, 32)
    assert torch.equal(padded[..., :5, :3], x)
    assert torch.equal(padded[..., 5, :3], x[..., 3, :])  # reflection, not replication


def test_wrong_channel_count_is_a_model_error(model: CLIPDenoiser) -> None:
    with pytest.raises(ModelError, match=r"\(B, 1, H, W\)"):
        model(torch.rand(1, 3, 32, 32))


def test_eval_mode_is_deterministic_and_train_mode_augments_features(model: CLIPDenoiser) -> None:
    x = torch.rand(1, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        first, second = model(x), model(x)
    model.eval()
    assert not torch.equal(first, second)


def test_augmentation_level_zero_makes_training_forward_deterministic() -> None:
    model = CLIPDenoiser(ModelConfig(feature_aug_level=0.0)).train()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_frozen_encoder_gets_no_gradients_and_its_batchnorm_stays_in_eval_mode(model: CLIPDenoiser) -> None:
    model.train()
    running_mean = model.encoder.bn1.running_mean.clone()
    model.zero_grad(set_to_none=True)
    model(torch.rand(2, 1, 64, 64)).abs().mean().backward()
    model.eval()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert model.input_conv.weight.grad is not None and model.input_conv.weight.grad.abs().sum() > 0
    assert torch.equal(model.encoder.bn1.running_mean, running_mean)


def test_train_encoder_option_makes_the_encoder_trainable_with_batchnorm_following_the_mode() -> None:
    model = CLIPDenoiser(ModelConfig(train_encoder=True)).train()
    assert model.encoder.training and model.encoder.bn1.training
    assert count_parameters(model)["frozen_encoder"] == 0
    model(torch.rand(2, 1, 32, 32)).mean().backward()
    assert model.encoder.conv1.weight.grad is not None


@pytest.mark.parametrize("name, trainable", [("RN101", 10_989_828), ("RN50x4", 17_170_244)])
def test_other_clip_resnets_build_with_their_own_widths(name: str, trainable: int) -> None:
    model = CLIPDenoiser(ModelConfig(encoder_name=name))
    assert count_parameters(model)["trainable"] == trainable


def test_config_round_trips_through_json() -> None:
    config = ModelConfig(encoder_name="RN101", feature_aug_level=0.05, train_encoder=True)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "data, key",
    [
        ({"encoder": "RN50"}, "encoder"),
        ({"encoder_name": "ViT-B-32"}, "encoder_name"),
        ({"feature_aug_level": -0.1}, "feature_aug_level"),
        ({"train_encoder": 1}, "train_encoder"),
        ({"in_channels": True}, "in_channels"),
    ],
)
def test_config_from_dict_names_the_bad_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(data)
    assert info.value.key == key
