"""The supervised RED-CNN baseline is trained by ``ctdenoise train`` (``architecture: redcnn``) on the same
physics-simulated pairs as the CLIPDenoiser, and resumes exactly; the result plugs into ``ctdenoise evaluate``.

Data: pydicom's real ``CT_small.dcm`` slice copied into a 2-slice training series and a 1-slice validation
series (new UIDs, shifted positions; :func:`ctdenoise.examples.build_series_from_slice`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ctdenoise.evaluate.methods import redcnn_method
from ctdenoise.model import REDCNN, load_checkpoint, read_checkpoint_config
from ctdenoise.training import train, train_config_from_dict
from ctdenoise.training.loop import CHECKPOINTS, MODEL_DIR
from ctdenoise.training.state import checkpoint_dir


@pytest.fixture
def recipe(build_series, tmp_path: Path) -> dict:
    build_series([0.0, 5.0], name="data/patient_a", source="CT_small.dcm")
    build_series([0.0], name="data/patient_b", source="CT_small.dcm")
    return {
        "data": {"root": str(tmp_path / "data"), "split_by": "patient", "validation": ["patient_b"]},
        "architecture": "redcnn",
        "noise": {"kind": "physics", "dose_range": [0.25, 0.25], "realisations": 1, "n_views": 90},
        "optim": {"lr": 1.0e-4},
        "validation": {"every": 2, "crop": 64, "levels": [{"kind": "physics", "n_views": 90}]},
        "iterations": 4, "batch_size": 2, "crop_size": 32, "checkpoint_every": 2, "log_every": 1,
        "num_threads": 1, "device": "cpu",
    }


def test_training_loop_trains_and_resumes_a_redcnn(recipe: dict, tmp_path: Path) -> None:
    config = train_config_from_dict(recipe)
    run = tmp_path / "run"
    result = train(config, run, progress=False)
    model, saved = load_checkpoint(result.model_dir), read_checkpoint_config(result.model_dir)
    assert isinstance(model, REDCNN) and saved["architecture"]["name"] == "redcnn"
    assert saved["training_summary"]["recipe"]["architecture"] == "redcnn"
    assert set(result.validation) == {"dose 0.25"} and set(result.validation["dose 0.25"]) == {"redcnn", "clip-paper"}
    uninterrupted = model.state_dict()

    shutil.rmtree(checkpoint_dir(run / CHECKPOINTS, 4))
    shutil.rmtree(run / MODEL_DIR)
    train(config, run, resume=True, progress=False)
    resumed = load_checkpoint(run / MODEL_DIR).state_dict()
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)

    method = redcnn_method(run / MODEL_DIR, device="cpu")
    hu = np.full((1, 48, 48), 40.0, dtype=np.float32)
    assert method.denoise(hu).shape == hu.shape and method.kind == "supervised"


def test_a_clipdenoiser_recipe_cannot_start_from_a_redcnn_folder(recipe: dict, tmp_path: Path) -> None:
    from ctdenoise.errors import ConfigError
    from ctdenoise.model import REDCNN, save_checkpoint

    start = save_checkpoint(REDCNN(filters=8), tmp_path / "redcnn")
    clip_recipe = {**recipe, "architecture": "clipdenoiser", "encoder_weights": "random", "init_model": str(start)}
    with pytest.raises(ConfigError, match=r"init_model.*has architecture a REDCNN"):
        train(train_config_from_dict(clip_recipe), tmp_path / "run", progress=False)


def test_ctdenoise_denoise_runs_a_redcnn_folder_through_the_same_runtime(tmp_path: Path) -> None:
    import json

    from ctdenoise.cli import main
    from ctdenoise.model import REDCNN, save_checkpoint

    torch.manual_seed(0)
    folder = save_checkpoint(REDCNN(filters=8).eval(), tmp_path / "redcnn")
    assert main(["example", str(tmp_path / "ct")]) == 0
    assert main(["denoise", str(tmp_path / "ct"), "-o", str(tmp_path / "out"), "--model", str(folder), "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"].startswith("redcnn@")
