"""Strength presets (``--strength low|medium|high``): the strength that removes 30/50/70 % of the noise of the
image-quality phantom, measured per model and read from the model folder's ``presets.json``."""

from __future__ import annotations

import argparse
import copy
import json
import shutil

import numpy as np
import pytest

from ctdenoise.cli import build_parser, main
from ctdenoise.cli.evaluate import _variant
from ctdenoise.cli.options import inference_settings, strength_value
from ctdenoise.errors import ModelError
from ctdenoise.iq.phantom import DigitalPhantom
from ctdenoise.iq.presets import choose_strength, measure_presets, strength_grid
from ctdenoise.iq.protocol import IQMethod, PhantomProtocol
from ctdenoise.registry import recorded_tensors_sha256, resolve_model_dir
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.strength_presets import (
    PRESET_TARGETS,
    PRESETS_FILE,
    read_presets,
    validate_presets,
    write_presets,
)
from ctdenoise.strength_table import strength_setting
from ctdenoise.transforms import DenoiseSlices

CPU = InferenceSettings(device="cpu")
PHANTOM = DigitalPhantom(size_px=128, pixel_mm=1.6)
#: The fake denoiser keeps this fraction of the noise at strength 1: at strength s the noise falls by 62 s %.
KEPT = 0.38


def scaled_noise_methods(phantom: DigitalPhantom = PHANTOM) -> list[IQMethod]:
    """One method per grid strength whose output keeps ``1 - (1 - KEPT) s`` of the noise (exactly: the noise-only
    images are linear in the output), so the preset strengths are known: low 0.5 (31 %), medium 0.85 (52.7 %),
    high not reached (62 % < 70 %)."""
    clean = phantom.image().astype(np.float32)

    def at(strength: float):
        return lambda hu: clean + np.float32(1.0 - (1.0 - KEPT) * strength) * (np.asarray(hu, np.float32) - clean)

    return [IQMethod(f"fake s={s:g}", at(s), s) for s in strength_grid()]


@pytest.fixture(scope="module")
def measured() -> dict:
    """The presets of the fake denoiser, measured on a small phantom with three scans (a few seconds)."""
    protocol = PhantomProtocol(phantom=PHANTOM, doses=(0.25,), realisations=3, seed=0)
    return measure_presets(scaled_noise_methods(), protocol, tensors_sha256="ab" * 32, command="pytest", model="fake")


@pytest.fixture()
def presets_checkpoint(tiny_checkpoint, tmp_path, measured):
    """A copy of ``tiny_checkpoint`` with the fake's presets written for its tensors."""
    directory = tmp_path / "with_presets"
    shutil.copytree(tiny_checkpoint, directory)
    write_presets(directory, {**measured, "tensors_sha256": recorded_tensors_sha256(directory)})
    return directory


def test_strength_grid_is_0_to_1_in_steps_of_0_05():
    grid = strength_grid()
    assert len(grid) == 21 and grid[0] == 0.0 and grid[-1] == 1.0 and grid[7] == 0.35
    with pytest.raises(ValueError, match="does not divide"):
        strength_grid(0.3)


def test_choose_strength_takes_the_smallest_strength_reaching_the_target_or_1_when_none_does():
    curve = [(0.0, 0.0), (0.25, 24.0), (0.5, 30.0), (0.75, 49.9), (1.0, 60.0)]
    assert choose_strength(curve, 30.0) == (0.5, True)  # reached exactly
    assert choose_strength(list(reversed(curve)), 45.0) == (0.75, True)  # order of the curve does not matter
    assert choose_strength(curve, 50.0) == (1.0, True)
    assert choose_strength(curve, 70.0) == (1.0, False)  # not reached even at strength 1


def test_measured_presets_reach_their_targets_at_the_smallest_grid_strength(measured):
    presets = measured["presets"]
    assert {name: p["strength"] for name, p in presets.items()} == {"low": 0.5, "medium": 0.85, "high": 1.0}
    assert [p["target_reached"] for p in presets.values()] == [True, True, False]
    curve = {s: reduction for s, _, reduction in measured["noise_curve"]}
    assert curve[0.5] == pytest.approx(31.0, abs=0.05) and curve[1.0] == pytest.approx(62.0, abs=0.05)
    for name, preset in presets.items():
        assert preset["target_noise_reduction_percent"] == PRESET_TARGETS[name]
        assert preset["noise_change_percent"] == pytest.approx(-curve[preset["strength"]], abs=0.05)
        assert preset["noise_hu"] == pytest.approx(measured["input"]["noise_hu"] * (1 - curve[preset["strength"]] / 100),
                                                   rel=1e-3)
        assert [i["name"] for i in preset["ttf50"]] == ["bone", "acrylic", "polyethylene", "soft lesion"]
        assert preset["dprime"] > measured["input"]["dprime"]  # less noise, same signal
    assert measured["measured_with"]["kernel"] == "standard" and measured["measured_with"]["dose"] == 0.25
    assert measured["measured_with"]["realisations"] == 3
    validate_presets(measured, "measured")


def test_presets_file_round_trips_and_resolves_through_strength_setting(presets_checkpoint):
    path = presets_checkpoint / PRESETS_FILE
    assert json.loads(path.read_text())["presets"]["medium"]["strength"] == 0.85
    presets = read_presets(presets_checkpoint)
    assert dict(presets.strengths) == {"low": 0.5, "medium": 0.85, "high": 1.0} and presets.source == str(path)
    assert strength_setting("low", presets_checkpoint) == 0.5
    assert strength_setting("medium", presets_checkpoint) == 0.85
    args = argparse.Namespace(device="cpu", precision="auto", batch_size=None, compile=False, cuda_graphs=False,
                              backend="auto", strength="medium", model=str(presets_checkpoint))
    assert inference_settings(args).strength == 0.85  # what denoise and serve run with
    from ctdenoise.runtime.prepare import load_prepared

    assert DenoiseSlices(load_prepared(presets_checkpoint, CPU), strength="high").settings.strength == 1.0


def test_presets_measured_for_other_tensors_are_refused_naming_the_file(presets_checkpoint, measured):
    path = presets_checkpoint / PRESETS_FILE
    path.write_text(json.dumps({**measured, "tensors_sha256": "cd" * 32}))
    with pytest.raises(ModelError, match="measured for model tensors sha256 cdcd") as error:
        read_presets(presets_checkpoint)
    assert str(path) in str(error.value)
    with pytest.raises(ModelError, match="not written"):
        write_presets(presets_checkpoint, {**measured, "tensors_sha256": "cd" * 32})


def _broken(measured: dict, change) -> dict:
    data = copy.deepcopy(measured)
    change(data)
    return data


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d.update(format="ctdenoise-strength-table"), "'format' is 'ctdenoise-strength-table'"),
    (lambda d: d.pop("command"), "lacks 'command'"),
    (lambda d: d["presets"].pop("high"), "'presets' lacks 'high'"),
    (lambda d: d["presets"]["low"].pop("noise_hu"), "'presets.low' lacks 'noise_hu'"),
    (lambda d: d["presets"]["low"].update(strength=1.2), r"'presets.low.strength' must be from 0.0 to 1.0"),
    (lambda d: d["presets"]["low"].update(strength="0.5"), "must be a finite number"),
    (lambda d: d["presets"]["medium"].update(strength=0.3), "must not decrease"),
    (lambda d: d["presets"]["high"].update(strength=0.9), "not reached has strength 1"),
    (lambda d: d["presets"]["low"].update(target_noise_reduction_percent=20.0), "defined as 30 %"),
    (lambda d: d["presets"]["low"]["ttf50"][0].pop("ttf50"), r"'presets.low.ttf50\[0\]' lacks 'ttf50'"),
    (lambda d: d["measured_with"].update(realisations=1), "realisations' must be a whole number of at least 2"),
    (lambda d: d.update(tensors_sha256="xyz"), "64 lowercase hex digits"),
    (lambda d: d.update(extra=1), "unknown key"),
])
def test_invalid_presets_files_are_refused_naming_the_file_and_the_problem(presets_checkpoint, measured, change,
                                                                            problem):
    path = presets_checkpoint / PRESETS_FILE
    data = _broken({**measured, "tensors_sha256": recorded_tensors_sha256(presets_checkpoint)}, change)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=problem) as error:
        read_presets(presets_checkpoint)
    assert str(path) in str(error.value)


def test_a_presets_file_that_is_not_json_or_not_a_file_is_refused(presets_checkpoint):
    path = presets_checkpoint / PRESETS_FILE
    path.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON") as error:
        read_presets(presets_checkpoint)
    assert str(path) in str(error.value)
    path.unlink()
    path.mkdir()
    with pytest.raises(ModelError, match="not a regular file"):
        read_presets(presets_checkpoint)


def test_a_model_folder_without_presets_gives_an_error_naming_it_and_the_command(tiny_checkpoint, tiny_model, capsys,
                                                                                 tmp_path):
    with pytest.raises(ModelError, match="no presets.json") as error:
        strength_setting("medium", tiny_checkpoint)
    assert str(tiny_checkpoint) in str(error.value)
    assert f"ctdenoise strength presets --model {tiny_checkpoint} --write" in str(error.value)
    with pytest.raises(ModelError, match="loaded from its folder"):
        DenoiseSlices(tiny_model, settings=CPU, strength="low")  # a model object not loaded from a folder
    assert main(["denoise", str(tmp_path), "-o", str(tmp_path / "out"), "--model", str(tiny_checkpoint),
                 "--strength", "high"]) == 2
    assert "ctdenoise strength presets" in capsys.readouterr().err
    with pytest.raises(ModelError, match="neither a number"):
        strength_setting("strong", tiny_checkpoint)


def test_the_command_line_accepts_the_preset_names_wherever_it_takes_a_strength():
    assert [strength_value(v) for v in ("low", "medium", "high", "auto", "0.4")] == ["low", "medium", "high", "auto", 0.4]
    with pytest.raises(argparse.ArgumentTypeError, match="low, medium, high"):
        strength_value("strong")
    parser = build_parser(["denoise", "serve"])
    assert parser.parse_args(["denoise", "in", "-o", "out", "--strength", "medium"]).strength == "medium"
    assert parser.parse_args(["serve", "--spool", "s", "--strength", "low"]).strength == "low"
    assert _variant("m=default@high") == ("m", "default", "high")


def test_strength_presets_command_prints_the_table_and_writes_the_report_and_file(presets_checkpoint, measured,
                                                                                    monkeypatch, tmp_path, capsys):
    """The command around the measurement (the measurement itself is the fake's, tested above)."""
    (presets_checkpoint / PRESETS_FILE).unlink()
    seen = {}

    def fake(spec, *, realisations, seed, command, settings):
        seen.update(spec=spec, realisations=realisations, seed=seed, command=command)
        return {**measured, "command": command, "tensors_sha256": recorded_tensors_sha256(presets_checkpoint)}

    monkeypatch.setattr("ctdenoise.iq.presets.measure_model_presets", fake)
    report = tmp_path / "report.json"
    assert main(["strength", "presets", "--model", str(presets_checkpoint), "--realisations", "4", "--seed", "3",
                 "--write", "-o", str(report)]) == 0
    out = capsys.readouterr().out
    assert seen["realisations"] == 4 and seen["seed"] == 3
    assert seen["command"].endswith("--realisations 4 --seed 3 --write")
    assert "TTF50 soft lesion" in out and "1 (target not reached)" in out and f"wrote {report}" in out
    assert json.loads(report.read_text())["presets"]["low"]["strength"] == 0.5
    assert read_presets(presets_checkpoint).strengths["medium"] == 0.85
    assert main(["strength", "presets", "--model", str(presets_checkpoint), "--realisations", "1"]) == 2


def test_the_default_model_ships_presets_measured_for_its_tensors():
    directory = resolve_model_dir("default")
    presets = read_presets(directory)  # valid, and for these tensors
    data = json.loads((directory / PRESETS_FILE).read_text())
    assert data["measured_with"]["kernel"] == "standard" and data["measured_with"]["dose"] == 0.25
    for name, preset in data["presets"].items():
        assert presets.strengths[name] == preset["strength"]
        if preset["target_reached"]:
            assert -preset["noise_change_percent"] >= PRESET_TARGETS[name]
    curve = {s: reduction for s, _, reduction in data["noise_curve"]}
    for name, strength in presets.strengths.items():  # the smallest grid strength that reaches the target
        below = round(strength - data["measured_with"]["grid_step"], 6)
        assert below < 0 or curve[below] < PRESET_TARGETS[name]
