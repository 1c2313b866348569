"""A hostile model folder is refused before anything the size of a model is allocated or parsed.

Each file must be a regular file of bounded size (a ``config.json`` linked to a device, or padded to
megabytes, is refused unread), the JSON bounded in nesting (no RecursionError traceback), the sizes in
the architecture bounded, and the tensors' header must match the architecture before the model is built
(the check builds it on the meta device only).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ctdenoise.cli import EXIT_USAGE, main
from ctdenoise.errors import CheckpointError, ConfigError, ModelError
from ctdenoise.model import architectures, load_checkpoint
from ctdenoise.model.checkpoint import CONFIG_FILE
from ctdenoise.model_files import MAX_CONFIG_BYTES
from ctdenoise.registry import model_label


@pytest.fixture
def folder(tiny_checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "hostile"))


def edit_architecture(folder: Path, **changes) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["architecture"].update(changes)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


@pytest.fixture
def built_models(monkeypatch) -> list[str]:
    """The device of every CLIPDenoiser that loading builds ("meta" for the allocation-free check)."""
    built: list[str] = []
    real = architectures.CLIPDenoiser

    def spy(config):
        model = real(config)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(architectures, "CLIPDenoiser", spy)
    return built


def test_a_config_linked_to_a_device_is_refused_unread(folder, capsys):
    (folder / CONFIG_FILE).unlink()
    os.symlink("/dev/null", folder / CONFIG_FILE)  # /dev/zero alike: never read
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(folder)
    with pytest.raises(ModelError, match="not a regular file"):
        model_label(folder)
    assert main(["example", str(folder.parent / "ct")]) == 0
    capsys.readouterr()
    assert main(["denoise", str(folder.parent / "ct"), "-o", str(folder.parent / "out"), "--model", str(folder)]) == EXIT_USAGE
    assert "not a regular file" in capsys.readouterr().err


def test_a_tensor_file_that_is_a_device_is_refused_before_hashing(folder):
    (folder / "model.safetensors").unlink()
    os.symlink("/dev/zero", folder / "model.safetensors")  # hashing it would never end
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(folder)


def test_an_oversized_config_is_refused_before_parsing(folder):
    text = (folder / CONFIG_FILE).read_text()
    (folder / CONFIG_FILE).write_text(text + " " * MAX_CONFIG_BYTES)  # valid JSON, 1 MiB of padding
    with pytest.raises(CheckpointError, match="over the limit"):
        load_checkpoint(folder)


def test_deeply_nested_json_is_a_clear_error_not_a_traceback(folder):
    config = json.loads((folder / CONFIG_FILE).read_text())
    depth = 100_000
    (folder / CONFIG_FILE).write_text(json.dumps(config)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(CheckpointError, match="nested deeper"):
        load_checkpoint(folder)


def test_an_absurd_channel_count_is_refused_before_anything_is_built(folder, built_models):
    edit_architecture(folder, in_channels=1_000_000_000)  # 12 GB of 1x1 convolution weights
    with pytest.raises(ConfigError, match="in_channels"):
        load_checkpoint(folder)
    assert built_models == []


def test_a_larger_encoder_than_the_tensors_hold_is_refused_without_building_it(folder, built_models):
    edit_architecture(folder, encoder_name="RN101")  # RN50x64 alike: 2.35 GB if built
    with pytest.raises(CheckpointError, match="do not match the architecture"):
        load_checkpoint(folder)
    assert built_models == ["meta"]


def test_a_good_folder_still_loads_and_builds_one_real_model(folder, built_models):
    load_checkpoint(folder)
    assert built_models == ["meta", "cpu"]
