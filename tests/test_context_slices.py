"""Specification of the 2.5-D input (``ModelConfig.context_slices``, issue 24), and of what it must not change.

A model with ``context_slices: 3`` sees the axial slices below, at and above the one it denoises as its input
channels and returns the denoised centre slice; a 2-D model (``context_slices: 1``, every existing model
folder) must keep its outputs, its files and the random stream of its training recipes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ctdenoise.errors import ConfigError, ModelError
from ctdenoise.evaluate.methods import Method
from ctdenoise.evaluate.report import _apply_to_chunk
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.model import (
    CLIPDenoiser,
    ModelConfig,
    context_indices,
    context_model_from_2d,
    create_model,
    load_checkpoint,
    save_checkpoint,
)
from ctdenoise.runtime.backends.onnx_runtime import onnxruntime_installed
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.training import train, train_config_from_dict
from ctdenoise.training.config import AugmentConfig, NoiseConfig, ValidationConfig
from ctdenoise.training.data import CTSlice, context_neighbours
from ctdenoise.training.loop import LOG_FILE, MODEL_DIR
from ctdenoise.training.pairs import PairSampler, mixup
from ctdenoise.training.validation import build_validation_set, evaluate

# ---------------------------------------------------------------- what a 2-D recipe draws is unchanged

#: (noisy sum, clean sum, noisy[0, 0, 5, 7], clean[-1, 0, 3, 2]) of the first four batches of the recipe in
#: :func:`_two_d_batches`, recorded before the 2.5-D input existed (commit d3ad2e8).
PINNED_2D_BATCHES = [
    (794.146143168211, 794.5966338068247, 0.21588239073753357, 0.28337016701698303),
    (797.5859176516533, 797.5117958709598, 0.32708099484443665, 0.2671269178390503),
    (821.8206034041941, 823.052704282105, 0.2436244785785675, 0.26054906845092773),
    (774.3249086737633, 774.2438767701387, 0.27535223960876465, 0.23048286139965057),
]


def _synthetic_slices(count: int = 3, shape: tuple[int, int] = (48, 40)) -> list[CTSlice]:
    rng = np.random.default_rng(7)
    return [CTSlice((rng.normal(0, 200, shape) + 40 * k).astype(np.float32), (0.8, 0.8), f"s[{k}]")
            for k in range(count)]


MIXED_NOISE = NoiseConfig(kind="mixed", dose_range=(0.1, 0.5), realisations=2, gaussian_share=0.3, clean_share=0.2,
                          sigma_range=(0.01, 0.05))
AUGMENT = AugmentConfig(dihedral=True, mixup_prob=0.5)


def _two_d_batches() -> list[tuple[float, float, float, float]]:
    sampler = PairSampler(_synthetic_slices(), MIXED_NOISE, 32, AUGMENT, seed=3)
    drawn = []
    for iteration in range(4):
        rng = np.random.default_rng([3, 0, iteration])  # as the training loop seeds iteration i
        noisy, clean = mixup(*sampler.batch(3, rng), AUGMENT, rng)
        drawn.append((noisy.double().sum().item(), clean.double().sum().item(),
                      float(noisy[0, 0, 5, 7]), float(clean[-1, 0, 3, 2])))
    return drawn


def test_a_2d_recipe_draws_exactly_the_batches_it_drew_before_the_25d_input() -> None:
    assert _two_d_batches() == [pytest.approx(batch, rel=1e-6) for batch in PINNED_2D_BATCHES]


# ---------------------------------------------------------------- the setting and the network


@pytest.fixture(scope="module")
def model_2d() -> CLIPDenoiser:
    """A 2-D RN50 denoiser in eval mode whose input convolution and decoder are not at their initial values."""
    torch.manual_seed(11)
    model = CLIPDenoiser(ModelConfig())
    with torch.no_grad():
        for parameter in (*model.decoder.parameters(), model.input_conv.weight):
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model.eval()


@pytest.fixture(scope="module")
def model_3(model_2d: CLIPDenoiser) -> CLIPDenoiser:
    return context_model_from_2d(model_2d)


@pytest.mark.parametrize("value", [0, 2, 5, True, "3", 3.0])
def test_context_slices_other_than_1_or_3_is_a_config_error_naming_it(value) -> None:
    with pytest.raises(ConfigError) as caught:
        ModelConfig.from_dict({"context_slices": value})
    assert caught.value.key == "context_slices"


def test_the_setting_round_trips_and_a_2d_config_records_what_it_recorded_before() -> None:
    three = ModelConfig(context_slices=3)
    assert ModelConfig.from_dict(json.loads(json.dumps(three.to_dict()))) == three
    assert three.to_dict()["context_slices"] == 3
    assert ModelConfig().to_dict() == {"encoder_name": "RN50", "feature_aug_level": 0.025, "train_encoder": False,
                                       "in_channels": 1}  # the keys of every config.json written before
    assert ModelConfig.from_dict(ModelConfig().to_dict()).context_slices == 1


def test_a_3_slice_network_takes_three_channels_and_returns_one(model_3: CLIPDenoiser) -> None:
    assert tuple(model_3.input_conv.weight.shape) == (3, 3, 1, 1)
    with torch.no_grad():
        assert tuple(model_3(torch.rand(2, 3, 40, 36)).shape) == (2, 1, 40, 36)
        with pytest.raises(ModelError, match=r"\(B, 3, H, W\)"):
            model_3(torch.rand(1, 1, 32, 32))


def test_redcnn_refuses_context_slices_clearly() -> None:
    with pytest.raises(ConfigError, match="RED-CNN") as caught:
        create_model("redcnn", context_slices=3)
    assert caught.value.key == "context_slices"


def test_context_indices_replicate_the_end_slices() -> None:
    assert context_indices(4, 3).tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert context_indices(1, 3).tolist() == [[0, 0, 0]]
    assert context_indices(3, 1).tolist() == [[0], [1], [2]]


# ---------------------------------------------------------------- the warm start


def test_the_warm_started_model_gives_the_2d_output_of_the_centre_slice(model_2d, model_3) -> None:
    stack = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(2))  # three different slices
    stack[:, 0] *= 0.3
    stack[:, 2] = 1 - stack[:, 2]
    with torch.no_grad():
        expected, got = model_2d(stack[:, 1:2]), model_3(stack)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    weight = model_3.input_conv.weight
    assert torch.equal(weight[:, 1:2], model_2d.input_conv.weight) and not weight[:, [0, 2]].any()
    assert model_3.encoder_weights_sha256 == model_2d.encoder_weights_sha256 and not model_3.training


def test_a_warm_start_needs_a_2d_clipdenoiser(model_3) -> None:
    with pytest.raises(ConfigError, match="2-D CLIPDenoiser"):
        context_model_from_2d(model_3)
    with pytest.raises(ConfigError, match="REDCNN"):
        context_model_from_2d(create_model("redcnn"))  # type: ignore[arg-type]


def test_a_3_slice_model_folder_round_trips_and_records_its_setting(model_3, tmp_path: Path) -> None:
    save_checkpoint(model_3, tmp_path / "m3")
    config = json.loads((tmp_path / "m3" / "config.json").read_text())
    assert config["architecture"]["context_slices"] == 3
    loaded = load_checkpoint(tmp_path / "m3")
    assert isinstance(loaded, CLIPDenoiser) and loaded.config == model_3.config
    stack = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(loaded(stack), model_3(stack))


def test_a_2d_model_folder_has_no_context_key_and_the_shipped_default_loads_as_2d(model_2d, tmp_path: Path) -> None:
    save_checkpoint(model_2d, tmp_path / "m1")
    assert "context_slices" not in json.loads((tmp_path / "m1" / "config.json").read_text())["architecture"]
    shipped = Path(__file__).resolve().parents[1] / "ctdenoise" / "models" / "default"
    loaded = load_checkpoint(shipped)
    assert isinstance(loaded, CLIPDenoiser) and loaded.config.context_slices == 1


# ---------------------------------------------------------------- inference


class WeightedSlices(torch.nn.Module):
    """A stand-in 3-slice network: 0.2 * below + 0.5 * centre + 0.3 * above (one output channel)."""

    config = ModelConfig(context_slices=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3
        return 0.2 * x[:, 0:1] + 0.5 * x[:, 1:2] + 0.3 * x[:, 2:3]


def _expected(hu: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """What WeightedSlices gives slice by slice, with the end slices standing in for missing neighbours."""
    unit = hu_to_unit(torch.from_numpy(hu))
    out = []
    for i in range(len(hu)):
        below, above = unit[max(i - 1, 0)], unit[min(i + 1, len(hu) - 1)]
        model = unit_to_hu(0.2 * below + 0.5 * unit[i] + 0.3 * above)
        out.append(torch.lerp(torch.from_numpy(hu[i]), model, strength).numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(5).normal(0, 300, (5, 40, 36)).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_each_slice_is_denoised_from_its_neighbours_and_blended_with_itself(volume, batch_size, strength) -> None:
    settings = InferenceSettings(device="cpu", backend="torch", batch_size=batch_size, strength=strength)
    np.testing.assert_allclose(denoise_hu(WeightedSlices(), volume, settings), _expected(volume, strength), atol=1e-3)


def test_a_single_slice_is_its_own_neighbour(volume) -> None:
    settings = InferenceSettings(device="cpu", backend="torch")
    single = denoise_hu(WeightedSlices(), volume[2], settings)  # a (rows, cols) array
    np.testing.assert_allclose(single, _expected(volume[2:3])[0], atol=1e-3)
    np.testing.assert_allclose(single, unit_to_hu(hu_to_unit(torch.from_numpy(volume[2]))).numpy(), atol=1e-3)


@pytest.mark.skipif(not onnxruntime_installed(), reason="onnxruntime not installed")
def test_onnx_runtime_exports_the_3_slice_input_and_pads_whole_stacks(volume) -> None:
    settings = InferenceSettings(device="cpu", backend="onnxruntime", batch_size=2, strength=0.6)
    np.testing.assert_allclose(denoise_hu(WeightedSlices(), volume, settings), _expected(volume, 0.6), atol=1e-3)


def test_a_3_slice_clipdenoiser_volume_equals_its_calls_on_the_neighbour_stacks(model_3, volume) -> None:
    network = copy.deepcopy(model_3)
    with torch.no_grad():  # neighbours that matter: no longer the warm start's zero columns
        network.input_conv.weight[:, [0, 2]] = torch.randn(3, 2, 1, 1, generator=torch.Generator().manual_seed(8))
    hu = volume[:3]
    got = denoise_hu(network, hu, InferenceSettings(device="cpu", backend="torch", batch_size=2))
    unit = hu_to_unit(torch.from_numpy(hu))
    with torch.no_grad():
        for i, (below, above) in enumerate([(0, 1), (0, 2), (1, 2)]):
            stack = torch.stack([unit[below], unit[i], unit[above]])[None]
            np.testing.assert_allclose(got[i], unit_to_hu(network(stack))[0, 0].numpy(), atol=0.05)


def test_evaluation_gives_a_3_slice_method_the_neighbours_across_its_chunks(volume) -> None:
    settings = InferenceSettings(device="cpu", backend="torch")
    method = Method("m3", "model", "stand-in", lambda hu: denoise_hu(WeightedSlices(), hu, settings), context_slices=3)
    case = SimpleNamespace(low_hu=volume, full_hu=volume, n_slices=len(volume))
    chunks = [_apply_to_chunk(method, case, start, min(start + 2, len(volume))) for start in range(0, len(volume), 2)]
    np.testing.assert_allclose(np.concatenate(chunks), _expected(volume), atol=1e-3)


def test_a_sweep_refuses_a_3_slice_method_on_spaced_slices() -> None:
    from ctdenoise.evaluate.sweep import _check_adjacent

    method = Method("m3", "model", "CLIPDenoiser checkpoint runs/m3", lambda hu: hu, context_slices=3)
    _check_adjacent([method], np.arange(10), 10, "case")  # every slice: adjacent
    with pytest.raises(ConfigError, match="runs/m3") as caught:
        _check_adjacent([method], np.array([0, 5, 9]), 10, "case")
    assert caught.value.key == "max_slices_per_case"


# ---------------------------------------------------------------- training


def _volume_slices(series: str, count: int, offset_hu: float = 100.0) -> list[CTSlice]:
    """``count`` slices of one series: one random image plus ``offset_hu * k`` for slice k (so a neighbour differs
    from its slice by a constant, whatever the window and its flip/rotation, only if both are cut alike)."""
    base = np.random.default_rng(len(series)).normal(0, 150, (48, 40)).astype(np.float32)
    return [CTSlice(base + offset_hu * k, (0.8, 0.8), f"{series}[{k}]", series=series, index=k) for k in range(count)]


def test_neighbours_stay_in_their_series_and_end_slices_stand_in_for_missing_ones() -> None:
    slices = _volume_slices("a", 3) + _volume_slices("b", 1) + [CTSlice(np.zeros((4, 4), np.float32), (1, 1), "x")]
    slices.pop(1)  # a[1] dropped (e.g. too small): a[0] and a[2] lose that neighbour
    assert context_neighbours(slices, 3) == [(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)]
    slices = _volume_slices("a", 3) + _volume_slices("b", 2)
    assert context_neighbours(slices, 3) == [(0, 0, 1), (0, 1, 2), (1, 2, 2), (3, 3, 4), (3, 4, 4)]


def _crop_differences(noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Below - centre and above - centre of each crop, as the spread over pixels and the mean (model scale)."""
    below, above = noisy[:, 0] - noisy[:, 1], noisy[:, 2] - noisy[:, 1]
    return (torch.stack([below.amax((-2, -1)) - below.amin((-2, -1)), above.amax((-2, -1)) - above.amin((-2, -1))]),
            torch.stack([below.mean((-2, -1)), above.mean((-2, -1))]))


def test_a_3_slice_sampler_stacks_one_window_and_transform_of_the_neighbours_around_the_centre_target() -> None:
    slices = _volume_slices("a", 4)
    sampler = PairSampler(slices, NoiseConfig(kind="none"), 32, AUGMENT, seed=1, context_slices=3)
    noisy, clean = sampler.batch(12, np.random.default_rng(0))
    assert noisy.shape == (12, 3, 32, 32) and clean.shape == (12, 1, 32, 32)
    assert torch.equal(noisy[:, 1:2], clean)  # clean-in: the centre channel is the target's slice
    spread, mean = _crop_differences(noisy)
    assert spread.max() < 1e-5  # the same window and flip/rotation on the three slices
    step = 100.0 / 4096  # 100 HU on the model scale
    allowed = torch.tensor([0.0, step])
    for value in (-mean[0]).tolist() + mean[1].tolist():  # a neighbour 100 HU off, or the end slice itself
        assert torch.isclose(allowed, torch.tensor(value), atol=1e-5).any()
    assert (mean.abs() < 1e-6).any() and (mean.abs() > step / 2).any()  # both cases were drawn
    mixed_noisy, mixed_clean = mixup(noisy, clean, AugmentConfig(mixup_prob=1.0), np.random.default_rng(3))
    assert mixed_noisy.shape == noisy.shape and mixed_clean.shape == clean.shape


def test_a_3_slice_sampler_gives_each_slice_its_own_noise_and_an_end_slice_its_own_again() -> None:
    slices = _volume_slices("a", 2)
    noise = NoiseConfig(kind="gaussian", sigma_range=(0.02, 0.04))
    sampler = PairSampler(slices, noise, 32, AugmentConfig(dihedral=False), seed=1, context_slices=3)
    noisy, clean = sampler.batch(6, np.random.default_rng(4))
    residual = noisy - clean  # what noise each channel got (the neighbour's own offset aside)
    for b, crop in enumerate(residual):
        stds = crop.flatten(1).std(dim=1)
        assert torch.allclose(stds, stds.mean(), rtol=0.25)  # one sigma for the stack
        repeated = [k for k in (0, 2) if torch.equal(noisy[b, k], noisy[b, 1])]
        assert len(repeated) == 1  # of two slices: one real neighbour with its own noise, one end slice repeated


def test_a_3_slice_physics_sampler_draws_its_realisations_per_scan() -> None:
    slices = _volume_slices("a", 2)
    noise = NoiseConfig(kind="physics", dose_range=(0.04, 1.0), dose_sampling="log-uniform", realisations=2)
    sampler = PairSampler(slices, noise, 32, AUGMENT, seed=1, context_slices=3)
    noisy, clean = sampler.batch(2, np.random.default_rng(5))
    assert noisy.shape == (2, 3, 32, 32) and clean.shape == (2, 1, 32, 32)
    residuals = [[sampler.simulated[j][r] - slices[j].hu for r in range(2)] for j in range(2)]
    assert not np.array_equal(residuals[0][0], residuals[1][0])  # each slice its own noise ...
    for r in range(2):  # ... at the dose of its scan's realisation r
        assert residuals[0][r].std() == pytest.approx(residuals[1][r].std(), rel=0.15)


@pytest.fixture(scope="module")
def validation_config() -> ValidationConfig:
    return ValidationConfig(every=1, crop=32, max_slices=2, levels=(NoiseConfig(kind="gaussian", sigma=0.03),
                                                                  NoiseConfig(kind="physics", dose_range=(0.25, 0.25))))


def test_a_3_slice_validation_set_keeps_the_2d_inputs_at_its_centre(validation_config) -> None:
    slices = _volume_slices("a", 3)
    flat = build_validation_set(slices, validation_config)
    deep = build_validation_set(slices, validation_config, context_slices=3)
    assert deep.sources == flat.sources == ("a[0]", "a[2]")
    for label, inputs in flat.noisy.items():
        for index, centre in enumerate(inputs):
            stack = deep.model_input(label, index, WeightedSlices())
            assert stack.shape == (1, 3, 32, 32) and torch.equal(stack[0, 1], centre)
            assert torch.equal(stack[0, 0 if index == 0 else 2], centre)  # the end slice stands in for itself
            assert not torch.equal(stack[0, 2 if index == 0 else 0], centre)
    with pytest.raises(ValueError, match="context_slices=3"):
        flat.model_input(next(iter(flat.noisy)), 0, WeightedSlices())


def test_the_warm_start_scores_what_its_2d_model_scores_in_validation(model_2d, model_3, validation_config) -> None:
    slices = _volume_slices("a", 3)
    flat = build_validation_set(slices, validation_config)
    deep = build_validation_set(slices, validation_config, context_slices=3)
    with torch.no_grad():
        for label, inputs in flat.noisy.items():
            for index in range(len(inputs)):
                torch.testing.assert_close(model_3(deep.model_input(label, index, model_3)),
                                           model_2d(flat.model_input(label, index, model_2d)), atol=1e-6, rtol=0)
    device = torch.device("cpu")
    scores_3, scores_2d = evaluate(model_3, deep, ("redcnn",), device), evaluate(model_2d, flat, ("redcnn",), device)
    for label, level in scores_2d.items():
        assert scores_3[label]["redcnn"] == pytest.approx(level["redcnn"], rel=1e-5)


def test_a_redcnn_recipe_refuses_context_slices() -> None:
    recipe = {"data": {"root": "x", "validation": ["p"]}, "architecture": "redcnn", "model": {"context_slices": 3}}
    with pytest.raises(ConfigError) as caught:
        train_config_from_dict(recipe)
    assert caught.value.key == "model.context_slices"


def test_a_3_slice_recipe_warm_starts_from_a_2d_model_folder_and_trains(build_series, model_2d, tmp_path: Path) -> None:
    build_series([0.0, 5.0, 10.0], name="data/patient_a", source="CT_small.dcm")
    build_series([0.0, 5.0], name="data/patient_b", source="CT_small.dcm")
    save_checkpoint(model_2d, tmp_path / "model_2d")
    recipe = {
        "data": {"root": str(tmp_path / "data"), "validation": ["patient_b"]},
        "model": {"context_slices": 3}, "init_model": str(tmp_path / "model_2d"), "encoder_weights": "random",
        "noise": {"kind": "gaussian"},
        "validation": {"every": 1, "crop": 32, "max_slices": 1, "levels": [{"kind": "gaussian", "sigma": 0.03}]},
        "iterations": 1, "batch_size": 2, "crop_size": 32, "checkpoint_every": 1, "num_threads": 1, "device": "cpu",
    }
    result = train(train_config_from_dict(recipe), tmp_path / "run", progress=False)
    trained = load_checkpoint(result.model_dir)
    assert isinstance(trained, CLIPDenoiser) and trained.config.context_slices == 3
    lines = [json.loads(line) for line in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    start = next(r for r in lines if r["event"] == "start")
    assert start["encoder_weights"]["warm_start"].startswith("2-D to 3 slices")
    assert any(r["event"] == "validation" and r.get("input") == "init_model" for r in lines)
    assert result.model_dir == tmp_path / "run" / MODEL_DIR


def test_the_two_v9_arms_differ_only_in_context_slices() -> None:
    from ctdenoise.training import load_train_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    one, three = (load_train_config(configs / f"finetune_v9_context{n}.yaml").to_dict() for n in (1, 3))
    assert (one["model"]["context_slices"], three["model"]["context_slices"]) == (1, 3)
    three["model"]["context_slices"] = 1
    assert one == three
    assert (one["iterations"], one["checkpoint_every"], one["validation"]["every"], one["seed"]) == (1000, 250, 500, 9)
    assert one["init_model"] == "/var/cache/ctdenoise-train/v9_init" and one["num_threads"] == 1


def test_adapt_refuses_a_3_slice_base_model_naming_its_folder(model_3, tmp_path: Path) -> None:
    from ctdenoise.adapt.loop import adapt

    save_checkpoint(model_3, tmp_path / "m3")
    with pytest.raises(ConfigError, match="m3.*2.5-D") as caught:
        adapt([tmp_path / "nothing"], tmp_path / "adapted", base=tmp_path / "m3")
    assert caught.value.key == "base"


def test_outputs_name_a_3_slice_model_as_2_5_d(model_3) -> None:
    from ctdenoise.registry import model_description

    assert model_description(model_3, "m3@0123").startswith("CLIPDenoising-architecture 2.5-D model (3 slices in) m3@0123")
