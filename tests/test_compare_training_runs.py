"""scripts/compare_training_runs.py: the validation scores of training runs side by side (the 2.5-D comparison)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("compare_training_runs", ROOT / "scripts" / "compare_training_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(run: Path, validations: list[tuple[int, str, float, dict[str, float]]]) -> Path:
    run.mkdir()
    events = [{"event": "start", "iteration": 0}]
    for iteration, source, score, levels in validations:
        metrics = {name: {"redcnn": {"psnr": psnr, "ssim": 0.9}} for name, psnr in levels.items()}
        events.append({"event": "validation", "iteration": iteration, "input": source, "selection_score": score,
                       "metrics": metrics})
    events.insert(1, {"event": "validation", "iteration": 0, "input": "noisy", "selection_score": 20.0,
                      "metrics": {name: {"redcnn": {"psnr": 20.0}} for name in validations[0][3]}})
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return run


def test_rows_per_run_and_iteration_with_the_change_since_the_first_model(tmp_path, monkeypatch, capsys):
    levels = {"dose 0.25": 30.0, "clean": 45.0}
    a = _log(tmp_path / "a", [(0, "init_model", 32.0, levels), (500, "model", 32.5, {"dose 0.25": 30.4, "clean": 45.0})])
    b = _log(tmp_path / "b", [(0, "init_model", 32.0, levels), (500, "model", 31.75, {"dose 0.25": 29.9, "clean": 44.0})])
    monkeypatch.setattr("sys.argv", ["compare_training_runs.py", f"2d={a}", f"25d={b}"])
    _script().main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | iteration | selection score | - first | dose 0.25 | clean |"
    assert "| 2d (model) | 500 | 32.50 | +0.50 | 30.40 | 45.00 |" in lines
    assert "| 25d (model) | 500 | 31.75 | -0.25 | 29.90 | 44.00 |" in lines
    assert not any("noisy" in line for line in lines)


def test_runs_with_other_validation_levels_are_refused(tmp_path, monkeypatch):
    a = _log(tmp_path / "a", [(0, "init_model", 32.0, {"dose 0.25": 30.0})])
    b = _log(tmp_path / "b", [(0, "init_model", 32.0, {"dose 0.1": 28.0})])
    monkeypatch.setattr("sys.argv", ["compare_training_runs.py", f"a={a}", f"b={b}"])
    with pytest.raises(SystemExit, match="validation levels differ"):
        _script().main()
