"""Strength "auto": each series' strength from its estimated noise through the model folder's strength table."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor

from ctdenoise.cli import main
from ctdenoise.cli.evaluate import _variant
from ctdenoise.errors import InputError, ModelError
from ctdenoise.noise_estimate import noise_hu_local_std_mode
from ctdenoise.registry import load_model
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.prepare import load_prepared
from ctdenoise.runtime.settings import InferenceSettings, resolve_strength
from ctdenoise.strength_table import (
    STRENGTH_TABLE_FILE,
    StrengthTable,
    fit_strength_points,
    read_strength_table,
    strength_setting,
    write_strength_table,
)
from ctdenoise.transforms import DenoiseSlices

CPU = InferenceSettings(device="cpu")
POINTS = ((5.0, 0.2), (15.0, 0.6), (30.0, 1.0))


@pytest.fixture()
def table_checkpoint(tiny_checkpoint, tmp_path):
    """A copy of ``tiny_checkpoint`` with a strength table: 0.1 for noiseless series, 1.0 from 30 HU up."""
    directory = tmp_path / "with_table"
    shutil.copytree(tiny_checkpoint, directory)
    write_strength_table(directory, [(2.0, 0.1), (30.0, 1.0)], {"data": "test"}, "pytest")
    return directory


def body_series(noise_hu: float, slices: int = 2) -> np.ndarray:
    """A disc of soft tissue (40 HU) in air, with white noise of ``noise_hu``."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:64, :64]
    clean = np.where((yy - 32) ** 2 + (xx - 32) ** 2 < 28**2, 40.0, -1000.0)
    return np.stack([clean + rng.normal(0, noise_hu, clean.shape) if noise_hu else clean
                     for _ in range(slices)]).astype(np.float32)


def test_table_interpolates_linearly_between_points_and_clamps_outside_them():
    table = StrengthTable(POINTS, "ab" * 32)
    assert table.strength_for(0.0) == pytest.approx(0.2)
    assert table.strength_for(10.0) == pytest.approx(0.4)
    assert table.strength_for(22.5) == pytest.approx(0.8)
    assert table.strength_for(500.0) == pytest.approx(1.0)


@pytest.mark.parametrize("points", [(), ((5.0, 0.6), (15.0, 0.2)), ((5.0, 0.2), (5.0, 0.4)), ((5.0, 1.2),),
                                    ((5.0, -0.1),), ((float("nan"), 0.5),)])
def test_table_refuses_points_that_are_not_a_monotone_map_into_zero_to_one(points):
    with pytest.raises(ModelError, match="strength table|table's"):
        StrengthTable(points, "ab" * 32, "x/strength.json")


def test_fit_sorts_by_noise_is_non_decreasing_and_clamped_to_zero_to_one():
    points = fit_strength_points([20.0, 5.0, 10.0, 40.0, 5.0], [0.8, 0.0, 0.9, 1.3, 0.2])
    assert [n for n, _ in points] == [5.0, 10.0, 20.0, 40.0]
    assert [s for _, s in points] == pytest.approx([0.1, 0.85, 0.85, 1.0])
    StrengthTable(tuple(points), "ab" * 32)  # a valid table


def test_table_is_read_back_for_its_model_and_refused_for_other_tensors(table_checkpoint):
    table = read_strength_table(table_checkpoint)
    assert table.points == ((2.0, 0.1), (30.0, 1.0))
    written = json.loads((table_checkpoint / STRENGTH_TABLE_FILE).read_text())
    assert written["command"] == "pytest" and written["fitted_on"] == {"data": "test"}
    config_path = table_checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    fitted_for = config["tensors"]["sha256"]
    config["tensors"]["sha256"] = "0" * 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelError, match="refusing") as error:
        read_strength_table(table_checkpoint)
    assert fitted_for in str(error.value) and "0" * 64 in str(error.value)
    assert str(table_checkpoint / STRENGTH_TABLE_FILE) in str(error.value)


def test_a_model_folder_without_a_table_gives_a_clear_error_naming_it(tiny_checkpoint, tiny_model, capsys, tmp_path):
    with pytest.raises(ModelError, match="no strength.json") as error:
        strength_setting("auto", tiny_checkpoint)
    assert str(tiny_checkpoint) in str(error.value)
    with pytest.raises(ModelError, match="loaded from its folder"):
        DenoiseSlices(tiny_model, settings=CPU, strength="auto")  # a model object that was not loaded from a folder
    assert main(["denoise", str(tmp_path), "-o", str(tmp_path / "out"), "--model", str(tiny_checkpoint),
                 "--strength", "auto"]) == 2
    assert str(tiny_checkpoint) in capsys.readouterr().err


def test_auto_chooses_a_lower_strength_for_a_clean_series_than_for_a_noisy_one(table_checkpoint):
    settings = replace(CPU, strength=read_strength_table(table_checkpoint))
    clean, noisy = body_series(0.0), body_series(40.0)
    assert resolve_strength(settings, clean).strength == pytest.approx(0.1, abs=0.01)
    assert resolve_strength(settings, noisy).strength == 1.0
    assert resolve_strength(settings, noisy, noise_hu=16.0).strength == pytest.approx(0.55)  # the caller's estimate
    with pytest.raises(InputError, match="cannot be estimated"):
        resolve_strength(settings, np.full((1, 64, 64), -1000.0, np.float32))  # air only: no soft tissue


def test_auto_in_denoise_hu_and_transforms_blends_at_the_table_strength(table_checkpoint):
    model = load_model(table_checkpoint)
    clean = body_series(0.0)
    chosen = resolve_strength(replace(CPU, strength=read_strength_table(table_checkpoint)), clean).strength
    expected = denoise_hu(model, clean, replace(CPU, strength=chosen))
    auto = denoise_hu(model, clean, replace(CPU, strength=read_strength_table(table_checkpoint)))
    np.testing.assert_allclose(auto, expected, atol=1e-3)
    assert np.abs(denoise_hu(model, clean, CPU) - clean).max() > np.abs(auto - clean).max()  # less than at 1
    volume = MetaTensor(torch.from_numpy(np.moveaxis(clean, 0, -1).copy())[None])
    prepared = load_prepared(table_checkpoint, CPU)
    assert prepared.model_dir == table_checkpoint
    out = DenoiseSlices(prepared, strength="auto")(volume)  # the table of the folder the model was loaded from
    np.testing.assert_allclose(out.numpy()[0], np.moveaxis(expected, 0, -1), atol=1e-3)


def test_cli_auto_records_the_numeric_strength_in_report_and_derivation_description(build_series, table_checkpoint,
                                                                                   tmp_path):
    series = build_series([0.0, 5.0], source="CT_small.dcm")
    out = tmp_path / "out"
    assert main(["denoise", str(series), "-o", str(out), "--model", str(table_checkpoint), "--device", "cpu",
                 "--strength", "auto"]) == 0
    entry = json.loads((out / "report.json").read_text())["series"][0]
    table = read_strength_table(table_checkpoint)
    from ctdenoise.io import read_volume

    noise = noise_hu_local_std_mode(read_volume(series).hu)
    assert entry["noise_hu_before"] == pytest.approx(noise, abs=0.01)
    assert entry["strength"] == pytest.approx(table.strength_for(noise), abs=1e-3)
    assert 0.1 < entry["strength"] < 1.0  # from the table, neither end
    first = pydicom.dcmread(sorted((out / entry["output"]).glob("*.dcm"))[0])
    assert first.DerivationDescription.endswith(f"strength {entry['strength']:g}")
    assert f"s={entry['strength']:g}" in first.SeriesDescription


def test_evaluate_variant_takes_auto():
    assert _variant("tuned=default@auto") == ("tuned", "default", "auto")
    assert _variant("half=default@0.5") == ("half", "default", 0.5)


def test_shipped_default_model_has_a_strength_table_fitted_for_its_tensors():
    from ctdenoise.registry import resolve_model_dir

    table = read_strength_table(resolve_model_dir())  # a replaced model needs: ctdenoise strength fit --write-table
    strengths = [s for _, s in table.points]
    assert strengths == sorted(strengths) and 0.0 <= strengths[0] <= strengths[-1] <= 1.0


def test_evaluate_method_at_auto_records_the_table_and_blends_at_its_strength(table_checkpoint):
    from ctdenoise.evaluate.methods import clip_model_method

    method = clip_model_method(table_checkpoint, "auto", device="cpu", strength="auto")
    assert method.provenance["strength"] == "auto"
    assert method.provenance["strength_table"]["points"] == [[2.0, 0.1], [30.0, 1.0]]
    clean = body_series(0.0, slices=1)
    expected = denoise_hu(load_model(table_checkpoint), clean, replace(CPU, strength=0.1))
    np.testing.assert_allclose(method.denoise(clean), expected, atol=1e-3)
