"""``ctdenoise strength fit`` and ``ctdenoise export``: the model tools a pip user runs (they were scripts/ files
that the wheel does not carry)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ctdenoise.cli import EXIT_OK, main
from ctdenoise.model import load_checkpoint
from ctdenoise.registry import recorded_tensors_sha256
from ctdenoise.strength_table import STRENGTH_TABLE_FILE, read_strength_table


@pytest.fixture
def recipe(build_series, tmp_path: Path) -> Path:
    """A recipe whose validation set is one real CT slice (patient_b) at Gaussian noise, on 64x64 crops."""
    build_series([0.0, 5.0], name="data/patient_a", source="CT_small.dcm")
    build_series([0.0], name="data/patient_b", source="CT_small.dcm")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"root": str(tmp_path / "data"), "split_by": "patient", "validation": ["patient_b"]},
        "encoder_weights": "random", "noise": {"kind": "gaussian"},
        "validation": {"every": 1, "crop": 64, "levels": [{"kind": "gaussian"}]},
        "iterations": 1, "crop_size": 32, "device": "cpu",
    }))
    return path


def test_strength_fit_scores_the_grid_and_writes_the_table_it_fitted(recipe, tiny_checkpoint, tmp_path, capsys):
    model = shutil.copytree(tiny_checkpoint, tmp_path / "model")  # the table is written into the model folder
    report = tmp_path / "fit.json"
    assert main(["strength", "fit", str(recipe), "--model", str(model), "--output", str(report),
                 "--strengths", "0,1", "--write-table"]) == EXIT_OK
    result = json.loads(report.read_text())
    assert set(result["by_strength"]) == {"0.0", "1.0"} and result["best_strength"] in (0.0, 1.0)
    assert result["tensors_sha256"] == recorded_tensors_sha256(model)
    table = read_strength_table(model)  # fitted for this model's tensors, else refused
    assert len(table.points) == len(result["auto"]["points"])
    for written_point, fitted_point in zip(table.points, result["auto"]["points"]):
        assert written_point == pytest.approx(fitted_point, abs=1e-3)
    written = json.loads((model / STRENGTH_TABLE_FILE).read_text())
    assert written["command"].startswith(f"ctdenoise strength fit {recipe} --model {model}")
    out = capsys.readouterr().out
    assert "best strength by the recipe's selection rule" in out and f"wrote {model / STRENGTH_TABLE_FILE}" in out


def test_strength_fit_refuses_strengths_outside_zero_to_one(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["strength", "fit", str(recipe), "--strengths", "0,2"])
    assert exit_info.value.code == 2 and "--strengths" in capsys.readouterr().err


def test_export_writes_a_float16_copy_that_loads(tiny_checkpoint, tmp_path, capsys):
    target = tmp_path / "shipped"
    assert main(["export", str(tiny_checkpoint), str(target)]) == EXIT_OK
    assert f"exported {target}" in capsys.readouterr().out
    source_bytes = (tiny_checkpoint / "model.safetensors").stat().st_size
    assert (target / "model.safetensors").stat().st_size < 0.6 * source_bytes  # float16: about half the bytes
    assert load_checkpoint(target).encoder is not None  # loads, its recorded hashes verified
