"""CLIP weight resolution: OpenAI TorchScript archives and open_clip state dicts, strict key checks,
canonical hashes, the user cache, and what happens without network.

The files are generated here (no model hub is reachable): a CLIP RN50 image tower with random values,
saved the way OpenAI ships ``RN50.pt`` (a TorchScript archive of the whole CLIP model, ``visual.*``
keys, convolution weights in float16) and the way open_clip saves state dicts (float32 safetensors).
"""

from __future__ import annotations

import urllib.error
import warnings
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.model import convert_weights_to_lp
from open_clip.modified_resnet import ModifiedResNet
from safetensors.torch import save_file
from torch import nn

from ctdenoise.errors import WeightsError
from ctdenoise.model import CLIPDenoiser, ModelConfig, ResolvedWeights, resolve_clip_weights
from ctdenoise.model.weights import CACHE_ENV_VAR, encoder_weights_sha256


class OpenAIStyleCLIP(nn.Module):
    """Enough of OpenAI's CLIP for its state-dict layout: the RN50 image tower plus a few text-side keys."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = ModifiedResNet(layers=[3, 4, 6, 3], output_dim=1024, heads=32, image_size=224, width=64)
        self.text_projection = nn.Parameter(torch.randn(512, 1024))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


def _randomise(module: nn.Module, seed: int) -> None:
    """Give every tensor random values (BatchNorm variances positive) so key mix-ups cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=generator) * 0.05
            if key.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight", ".1.weight")):
                values = values.abs() + 0.5
            tensor.copy_(values)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One random RN50 CLIP, written as OpenAI's RN50.pt archive, an open_clip safetensors file, and a
    tensors-only torch.save file of the encoder part inside a ``{"state_dict": {"module.visual...."}}`` wrapper."""
    folder = tmp_path_factory.mktemp("clip_weights")
    clip = OpenAIStyleCLIP()
    _randomise(clip, seed=1)
    convert_weights_to_lp(clip)  # OpenAI's archives hold float16 conv/linear weights, float32 BatchNorm
    open_clip_dict = {k: v.float().contiguous() for k, v in clip.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(clip).save(str(folder / "RN50.pt"))
    save_file(open_clip_dict, str(folder / "open_clip_model.safetensors"))
    encoder_part = {
        f"module.{k}": v for k, v in open_clip_dict.items() if k.startswith("visual.") and ".layer4." not in k
    }
    encoder_part = {k: v for k, v in encoder_part.items() if ".attnpool." not in k}
    torch.save({"state_dict": encoder_part, "epoch": 3}, folder / "encoder_only.pt")
    return {
        "openai": folder / "RN50.pt",
        "open_clip": folder / "open_clip_model.safetensors",
        "torch_save": folder / "encoder_only.pt",
        "state_dict": open_clip_dict,  # type: ignore[dict-item]
        "folder": folder,
    }


def _write_variant(weight_files: dict, tmp_path: Path, change: dict) -> Path:
    tensors = dict(weight_files["state_dict"]) | change
    path = tmp_path / "variant.safetensors"
    save_file({k: v for k, v in tensors.items() if v is not None}, str(path))
    return path


def test_openai_archive_and_open_clip_state_dict_give_identical_encoders(weight_files: dict) -> None:
    from_openai = resolve_clip_weights("RN50", weights=weight_files["openai"])
    from_open_clip = resolve_clip_weights("RN50", weights=weight_files["open_clip"])
    assert from_openai.sha256 == from_open_clip.sha256
    assert from_openai.state_dict.keys() == from_open_clip.state_dict.keys()
    assert not any(k.startswith(("layer4.", "attnpool.", "visual.")) for k in from_openai.state_dict)
    assert str(weight_files["openai"].resolve()) in from_openai.origin

    model, x = CLIPDenoiser().eval(), torch.rand(1, 1, 64, 64)
    outputs = []
    for weights in (from_openai, from_open_clip):
        model.load_encoder_weights(weights)
        with torch.no_grad():
            outputs.append([*model.encoder(model.input_conv(x)), model(x)])
    assert all(torch.equal(a, b) for a, b in zip(*outputs, strict=True))


def test_loaded_weights_are_the_clip_tensors_and_are_recorded_on_the_model(weight_files: dict) -> None:
    weights = resolve_clip_weights("RN50", weights=weight_files["openai"])
    model = CLIPDenoiser()
    model.load_encoder_weights(weights)
    expected = weight_files["state_dict"]["visual.layer3.5.conv2.weight"]
    assert torch.equal(model.encoder.layer3[5].conv2.weight, expected)
    assert torch.equal(model.encoder.bn1.running_var, weight_files["state_dict"]["visual.bn1.running_var"])
    assert model.encoder_weights_sha256 == weights.sha256
    assert model.encoder_weights_origin == weights.origin


def test_tensors_only_torch_save_file_with_wrapper_and_module_prefix_is_accepted(weight_files: dict) -> None:
    reference = resolve_clip_weights("RN50", weights=weight_files["open_clip"])
    assert resolve_clip_weights("RN50", weights=weight_files["torch_save"]).sha256 == reference.sha256


def test_hash_is_canonical_over_used_tensors() -> None:
    tensors = {"b": torch.ones(2, 3), "a": torch.zeros(4)}
    assert encoder_weights_sha256(tensors) == encoder_weights_sha256({"a": torch.zeros(4), "b": torch.ones(2, 3).half()})
    assert encoder_weights_sha256(tensors) != encoder_weights_sha256({"a": torch.zeros(4), "b": torch.ones(3, 2)})
    assert encoder_weights_sha256(tensors) != encoder_weights_sha256({"a": torch.zeros(4), "c": torch.ones(2, 3)})


def test_file_with_a_missing_key_is_refused_naming_it(weight_files: dict, tmp_path: Path) -> None:
    path = _write_variant(weight_files, tmp_path, {"visual.layer2.1.bn2.running_var": None})
    with pytest.raises(WeightsError, match=r"missing keys: layer2\.1\.bn2\.running_var") as info:
        resolve_clip_weights("RN50", weights=path)
    assert str(path.resolve()) in str(info.value)


def test_file_with_an_unexpected_key_is_refused_naming_it(weight_files: dict, tmp_path: Path) -> None:
    path = _write_variant(weight_files, tmp_path, {"visual.layer3.6.conv1.weight": torch.zeros(256, 1024, 1, 1)})
    with pytest.raises(WeightsError, match=r"unexpected keys: layer3\.6\.conv1\.weight"):
        resolve_clip_weights("RN50", weights=path)


def test_file_with_a_wrongly_shaped_tensor_is_refused_naming_it(weight_files: dict, tmp_path: Path) -> None:
    path = _write_variant(weight_files, tmp_path, {"visual.conv2.weight": torch.zeros(32, 32, 1, 1)})
    with pytest.raises(WeightsError, match=r"wrong shapes: conv2\.weight \(32, 32, 1, 1\) \(expected \(32, 32, 3, 3\)\)"):
        resolve_clip_weights("RN50", weights=path)


def test_rn50_weights_do_not_fit_an_rn101_encoder(weight_files: dict) -> None:
    with pytest.raises(WeightsError, match=r"not the image tower of CLIP RN101; missing keys: layer3\.10\."):
        resolve_clip_weights("RN101", weights=weight_files["open_clip"])
    weights = resolve_clip_weights("RN50", weights=weight_files["open_clip"])
    with pytest.raises(WeightsError, match="cannot go into a RN101 encoder"):
        CLIPDenoiser(ModelConfig(encoder_name="RN101")).load_encoder_weights(weights)


def test_hand_made_resolved_weights_are_checked_by_load_encoder_weights() -> None:
    partial = {k: v for k, v in CLIPDenoiser().encoder.state_dict().items() if not k.startswith("layer3.")}
    weights = ResolvedWeights(partial, encoder_weights_sha256(partial), "hand made", "RN50")
    with pytest.raises(WeightsError, match=r"hand made: .*missing keys: layer3\.0\."):
        CLIPDenoiser().load_encoder_weights(weights)


def test_pickle_with_python_objects_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "RN50.bin"
    torch.save({"state_dict": {"visual.conv1.weight": torch.zeros(1)}, "optimizer": Path("x")}, path)
    with pytest.raises(WeightsError, match=r"RN50\.bin: cannot read as CLIP weights"):
        resolve_clip_weights("RN50", weights=path)


def test_missing_explicit_file_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.pt: CLIP weight file not found"):
        resolve_clip_weights("RN50", weights=tmp_path / "nope.pt")


def test_weights_are_found_in_the_cache_folder_named_by_the_environment(
    weight_files: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(weight_files["folder"]))  # holds RN50.pt
    weights = resolve_clip_weights("RN50", allow_download=False)
    assert weights.origin.startswith("user cache") and weights.origin.endswith("RN50.pt")
    assert weights.sha256 == resolve_clip_weights("RN50", weights=weight_files["open_clip"]).sha256


def test_without_network_the_error_says_how_to_supply_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> str:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(open_clip, "download_pretrained", no_network)
    with pytest.raises(WeightsError) as info:
        resolve_clip_weights("RN50", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "download failed (URLError" in message
    assert str(tmp_path / "cache") in message and "RN50.pt" in message and CACHE_ENV_VAR in message
    assert f"curl -L -o RN50.pt {open_clip.get_pretrained_url('RN50', 'openai')}" in message


def test_download_can_be_disabled(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not in the cache and downloading is disabled"):
        resolve_clip_weights("RN50", cache_dir=tmp_path, allow_download=False)
