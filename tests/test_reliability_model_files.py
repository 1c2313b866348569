"""Model files are data, never code: malicious pickles are refused unexecuted, damaged checkpoints by their hash.

``tests/test_model_checkpoint.py`` covers the round trips, the pickle refusal by name and magic
bytes, and a tampered tensor file; this file adds hostile payloads that would *run code* if they
were unpickled (a marker file proves they were not), through the library, the CLI and the CLIP
weight reader; bit flips, truncation and appended bytes; a broken file whose hash was rewritten.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from ctdenoise.cli import EXIT_USAGE, main
from ctdenoise.errors import CheckpointError, WeightsError
from ctdenoise.io.hashing import sha256_file
from ctdenoise.model import load_checkpoint
from ctdenoise.model.checkpoint import CONFIG_FILE, TENSORS_FILE
from ctdenoise.model.weights import resolve_clip_weights


class RunsCode:
    """Unpickling this object runs ``os.system``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code_was_executed"


@pytest.fixture
def checkpoint_copy(tiny_checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint"))


@pytest.mark.parametrize("name", ["model.pt", "weights.dat", "model.safetensors.pkl"])
def test_a_malicious_pickle_checkpoint_is_refused_without_running_it(name, marker, tmp_path):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(RunsCode(marker), protocol=2))
    with pytest.raises(CheckpointError, match="can run arbitrary code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_torch_save_archive_in_place_of_the_tensors_is_refused_without_running_it(checkpoint_copy, marker):
    torch.save({"weights": RunsCode(marker)}, checkpoint_copy / TENSORS_FILE)
    with pytest.raises(CheckpointError, match="differs from .* recorded"):
        load_checkpoint(checkpoint_copy)
    assert not marker.exists()


def test_the_cli_refuses_a_pickled_model_with_a_clear_message(marker, tmp_path, build_series, capsys):
    series = build_series([0.0], name="in", source="CT_small.dcm")
    model = tmp_path / "model.pth"
    torch.save(RunsCode(marker), model)
    code = main(["denoise", str(series), "-o", str(tmp_path / "out"), "--model", str(model), "--device", "cpu"])
    assert code == EXIT_USAGE and not marker.exists()
    assert "refused because loading them can run arbitrary code" in capsys.readouterr().err


def test_malicious_clip_weights_are_refused_without_running_them(marker, tmp_path):
    path = tmp_path / "RN50.pt"
    torch.save({"visual.conv1.weight": RunsCode(marker)}, path)
    with pytest.raises(WeightsError):
        resolve_clip_weights("RN50", weights=path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["flip_one_byte", "truncate", "append"])
def test_a_damaged_tensor_file_is_detected_by_its_hash(damage, checkpoint_copy):
    path = checkpoint_copy / TENSORS_FILE
    data = bytearray(path.read_bytes())
    if damage == "flip_one_byte":
        data[len(data) // 2] ^= 0x01  # one bit inside the tensor data: the file still parses
    elif damage == "truncate":
        del data[-1000:]
    else:
        data += b"\0"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="the file was modified or corrupted"):
        load_checkpoint(checkpoint_copy)


def test_a_broken_tensor_file_with_a_rewritten_hash_is_a_clear_error(checkpoint_copy):
    """Someone 'fixed' the hash: the file is still checked for what it is, and refused without a traceback."""
    path = checkpoint_copy / TENSORS_FILE
    path.write_bytes(path.read_bytes()[:4096])
    config = json.loads((checkpoint_copy / CONFIG_FILE).read_text())
    config["tensors"]["sha256"] = sha256_file(path)
    (checkpoint_copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unreadable safetensors file"):
        load_checkpoint(checkpoint_copy)


def test_a_checkpoint_without_a_recorded_hash_is_refused(checkpoint_copy):
    config = json.loads((checkpoint_copy / CONFIG_FILE).read_text())
    del config["tensors"]["sha256"]
    (checkpoint_copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no sha256 recorded"):
        load_checkpoint(checkpoint_copy)
