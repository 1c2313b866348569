"""Specification of ``ctdenoise evaluate``: Mayo-2016 pairing, reports, figures, baselines and the dose sweep.

The test data is a small Mayo-2016-style tree built from a real CT slice: pydicom's ``CT_small.dcm``
(128x128, 0.66 mm pixels) copied along its slice normal into 4-slice series with new UIDs, 50 HU added
per copy so slices differ (:func:`ctdenoise.examples.build_series_from_slice`). The quarter-dose series
is the full-dose series after :func:`ctdenoise.simulate.simulate_low_dose` at dose 0.25 (I0 2e3), written as a
derived series (new SeriesInstanceUID and SeriesNumber) whose files are renamed in reverse position
order, so only positions can pair the slices, as in the real Mayo data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from ctdenoise.cli import main
from ctdenoise.errors import InputError, UnpairedSlicesError
from ctdenoise.evaluate.methods import classical_method
from ctdenoise.evaluate.pairing import mayo_cases, pair_case, simulated_cases
from ctdenoise.evaluate.report import summarise
from ctdenoise.examples import build_series_from_slice
from ctdenoise.io import DicomOutput, read_volume, write_volume
from ctdenoise.model import REDCNN, load_checkpoint, read_checkpoint_config, save_checkpoint
from ctdenoise.simulate import simulate_low_dose

POSITIONS_MM = (0.0, 1.0, 2.0, 3.0)
#: Photons per ray of the simulation: CT_small is a small field of view whose own texture (~24 HU local
#: std) would outweigh the default I0's quarter-dose noise (~9 HU); at 2e3 the added noise (~65 HU)
#: dominates, as quarter-dose noise does in the Mayo data.
LOW_I0 = 2e3
STEP_HU = 50


def _patient(root: Path, source: Path, patient: str, seed: int) -> None:
    full = build_series_from_slice(source, root / patient / "full_1mm", POSITIONS_MM, value_step=STEP_HU)
    volume = read_volume(full)
    low = simulate_low_dose(volume.hu, volume.spacing[1:], dose_fraction=0.25, i0=LOW_I0, seed=seed)
    quarter = root / patient / "quarter_1mm"
    files = write_volume(volume, low, quarter, format="dicom", dicom=DicomOutput("QD", "simulated quarter dose (test data)"))
    for rank, path in enumerate(sorted(files, reverse=True)):
        path.rename(quarter / f"{patient}_QD_{rank:04d}.IMA")


@pytest.fixture(scope="module")
def mayo_root(tmp_path_factory) -> Path:
    """Mayo-style tree with patients L067 (training) and L506 (test), 4 slices each."""
    from conftest import real_test_file

    root = tmp_path_factory.mktemp("mayo")
    source = real_test_file("CT_small.dcm")
    for seed, patient in enumerate(("L067", "L506")):
        _patient(root, source, patient, seed)
    return root


@pytest.fixture(scope="module")
def redcnn_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(REDCNN(), tmp_path_factory.mktemp("redcnn"))


def test_mayo_cases_default_to_the_l506_test_split(mayo_root):
    assert [c.name for c in mayo_cases(mayo_root)] == ["L506"]
    assert [c.name for c in mayo_cases(mayo_root, patients=None)] == ["L067", "L506"]


def test_slices_pair_by_position_although_names_and_series_differ(mayo_root):
    case = mayo_cases(mayo_root)[0].load()
    assert case.n_slices == len(POSITIONS_MM)
    assert np.allclose(np.diff(case.positions_mm), 1.0)
    # Each low-dose slice sits on its own normal-dose slice (mean difference ~0), not a neighbour (50 HU apart).
    mean_differences = (case.low_hu - case.full_hu).reshape(case.n_slices, -1).mean(axis=1)
    assert np.all(np.abs(mean_differences) < STEP_HU / 5)
    assert np.all(np.abs(case.low_hu - case.full_hu).max(axis=(1, 2)) > 0)  # noise was added


def test_a_missing_low_dose_slice_is_an_unpaired_error_naming_the_position(mayo_root, tmp_path):
    import shutil

    shutil.copytree(mayo_root / "L506", tmp_path / "L506")
    quarter = tmp_path / "L506" / "quarter_1mm"
    last = next(p for p in quarter.iterdir() if p.name.endswith("_0000.IMA"))  # reverse order: the highest position
    last.unlink()
    with pytest.raises(UnpairedSlicesError, match="no low-dose partner") as info:
        mayo_cases(tmp_path)[0].load()
    assert "quarter_1mm" in str(info.value)


def test_series_with_different_pixel_grids_are_refused(mayo_root, tmp_path):
    from conftest import real_test_file

    other = build_series_from_slice(real_test_file("693_UNCR.dcm"), tmp_path / "other", POSITIONS_MM)
    with pytest.raises(UnpairedSlicesError, match="matrix 512x512 vs 128x128"):
        pair_case(other, mayo_root / "L506" / "full_1mm").load()


def test_missing_patient_or_dose_folders_name_the_path(mayo_root, tmp_path):
    with pytest.raises(InputError, match="L143.*patient folder missing"):
        mayo_cases(mayo_root, patients=("L143",))
    (tmp_path / "L506" / "full_1mm").mkdir(parents=True)
    with pytest.raises(InputError, match="quarter_1mm: dose folder missing"):
        mayo_cases(tmp_path)


def test_summary_statistics_are_mean_and_sample_std_per_group():
    rows = [
        {"patient": p, "method": "m", "protocol": "redcnn", "psnr": v, "ssim": 0.5, "rmse_hu": 10.0, "rmse_body_hu": 8.0}
        for p, v in (("A", 30.0), ("A", 32.0), ("B", 40.0))
    ]
    assert summarise(rows, "patient")["A"]["m"]["redcnn"]["psnr"] == {"mean": 31.0, "std": pytest.approx(np.sqrt(2.0)), "n": 2}
    assert summarise(rows, None)["m"]["redcnn"]["psnr"]["mean"] == pytest.approx(34.0)


def test_redcnn_keeps_the_image_size_and_round_trips_its_checkpoint(redcnn_checkpoint):
    model, config = load_checkpoint(redcnn_checkpoint), read_checkpoint_config(redcnn_checkpoint)
    assert isinstance(model, REDCNN) and not model.training
    assert config["architecture"] == {"name": "redcnn", "filters": 96, "kernel_size": 5} and "encoder" not in config
    assert sum(p.numel() for p in model.parameters()) == 1_848_865
    x = torch.rand(2, 1, 40, 56)
    assert model(x).shape == x.shape
    assert torch.equal(model(x), load_checkpoint(redcnn_checkpoint)(x))


def test_a_modified_redcnn_checkpoint_is_refused(redcnn_checkpoint, tmp_path):
    import shutil

    from ctdenoise.errors import CheckpointError

    copy = Path(shutil.copytree(redcnn_checkpoint, tmp_path / "copy"))
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(copy)


def test_evaluate_on_a_mayo_tree_writes_metrics_summary_and_figures(mayo_root, tiny_checkpoint, redcnn_checkpoint, tmp_path):
    out = tmp_path / "eval"
    code = main(["evaluate", "--mayo", str(mayo_root), "--model", str(tiny_checkpoint), "--redcnn", str(redcnn_checkpoint),
                 "--protocol", "redcnn", "--protocol", "clip-paper", "--device", "cpu", "-o", str(out)])
    assert code == 0
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    methods = ["input", "nlm", "clipdenoiser", "redcnn"]
    assert len(rows) == len(POSITIONS_MM) * len(methods) * 2
    assert {r["method"] for r in rows} == set(methods) and {r["patient"] for r in rows} == {"L506"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["protocols"]) == {"redcnn", "clip-paper"}
    assert summary["protocols"]["redcnn"]["hu_range"] == [-160.0, 240.0]
    assert summary["overall"]["nlm"]["redcnn"]["psnr"]["n"] == len(POSITIONS_MM)
    nlm, low = (summary["per_patient"]["L506"][m]["redcnn"]["psnr"]["mean"] for m in ("nlm", "input"))
    assert nlm > low  # the classical filter removes simulated quarter-dose noise
    assert set(summary["model_card_sha256"]) == {"clipdenoiser", "redcnn"}
    assert summary["methods"]["clipdenoiser"]["provenance"]["tensors_sha256"]
    assert summary["versions"]["ctdenoise"] and summary["versions"]["torch"]
    assert summary["data"]["mode"] == "mayo2016" and summary["data"]["slices"] == len(POSITIONS_MM)
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["L506_slice0002.png", "boxplot_clip-paper.png", "boxplot_redcnn.png"]
    assert "PSNR dB (redcnn)" in (out / "summary.md").read_text()


def test_generic_pair_mode_and_dose_sweep(mayo_root, tmp_path):
    patient = mayo_root / "L067"
    out = tmp_path / "eval"
    code = main(["evaluate", "--low", str(patient / "quarter_1mm"), "--full", str(patient / "full_1mm"), "--model", "none",
                 "--baselines", "input", "--sweep-dose", "0.5,0.1", "--sweep-sigma", "10", "--figure-slices", "0,3",
                 "-o", str(out)])
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["data"]["mode"] == "pair"
    assert {p.name for p in (out / "figures").glob("full_1mm_slice*.png")} == {"full_1mm_slice0000.png", "full_1mm_slice0003.png"}
    with (out / "sweep" / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["case"] for r in rows} == {"all", "full_1mm"}  # pooled rows and one case's rows
    psnr = {(r["noise"], float(r["level"])): float(r["psnr_mean"]) for r in rows if r["case"] == "all"}
    assert all(float(r["rmse_body_hu_mean"]) > 0 for r in rows)
    assert psnr[("physics", 0.5)] > psnr[("physics", 0.1)]  # less dose, more noise
    assert set(psnr) == {("physics", 0.5), ("physics", 0.1), ("gaussian", 10.0)}
    assert (out / "sweep" / "psnr_vs_dose.png").stat().st_size > 0
    assert "Gaussian sigma 10/255" in (out / "sweep" / "sweep.md").read_text()


def test_bad_data_arguments_are_usage_errors(tmp_path, capsys):
    assert main(["evaluate", "--full", str(tmp_path), "--model", "none", "-o", str(tmp_path / "o")]) == 2
    assert "needs --low, --simulate-dose, a sweep" in capsys.readouterr().err


def test_noise_estimate_of_the_nlm_baseline_finds_added_gaussian_noise(ct_small):
    from ctdenoise.noise_estimate import noise_hu_local_std_percentile

    hu = read_volume(ct_small).hu[0]
    noisy = hu + np.random.default_rng(0).normal(0.0, 80.0, hu.shape)
    assert 0.8 * 80 < noise_hu_local_std_percentile(noisy) < 1.25 * 80


def test_body_mask_is_the_patient_with_lungs_filled_and_without_the_table():
    from ctdenoise.metrics import body_mask, body_rmse_hu

    yy, xx = np.mgrid[:64, :64]
    ref = np.full((64, 64), -1000.0)
    body = (yy - 30) ** 2 / 20**2 + (xx - 32) ** 2 / 26**2 <= 1
    ref[body] = 40.0
    ref[(yy - 30) ** 2 + (xx - 22) ** 2 <= 36] = -850.0  # a lung inside the body
    ref[60:62, 5:59] = 200.0  # the table, not connected to the body
    mask = body_mask(ref)
    assert np.array_equal(mask, body)
    pred = ref.copy()
    pred[body] += 10.0
    pred[60:62] += 500.0  # errors outside the body do not count
    assert body_rmse_hu(pred, ref) == pytest.approx(10.0)


def test_given_sigma_filters_get_the_true_noise_level_of_each_slice(ct_small):
    from ctdenoise.evaluate.methods import apply_method, classical_method, true_noise_sigma_hu

    full = read_volume(ct_small).hu[:1].astype(np.float64)
    low = full + np.random.default_rng(1).normal(0.0, 60.0, full.shape)
    assert true_noise_sigma_hu(low[0], full[0]) == pytest.approx(60.0, rel=0.05)
    seen = []
    method = classical_method("nlm-sigma")
    recorded = type(method)(method.name, method.kind, method.description,
                            lambda hu, sigmas: (seen.append(sigmas), hu)[1], given_noise_level=True)
    apply_method(recorded, low, full)
    assert seen and seen[0][0] == pytest.approx(true_noise_sigma_hu(low[0], full[0]))
    denoised = apply_method(method, low, full)
    assert np.sqrt(np.mean((denoised - full) ** 2)) < 0.7 * np.sqrt(np.mean((low - full) ** 2))


def test_the_textured_phantom_is_noiseless_and_deterministic():
    from ctdenoise.evaluate.clean_check import clean_image_change, textured_phantom

    phantom = textured_phantom(size=128)
    assert np.array_equal(phantom, textured_phantom(size=128))
    assert phantom.min() == pytest.approx(-1000.0) and phantom.max() > 500.0  # air and bone
    assert clean_image_change(phantom, phantom) == {"rmse_body_hu": 0.0, "p99_abs_change_hu": 0.0, "detail_kept": 1.0}
    blurred = clean_image_change(gaussian_filter(phantom, 1.5), phantom)
    assert blurred["rmse_body_hu"] > 3.0 and blurred["detail_kept"] < 0.6  # a smoothing filter is caught


def test_clean_check_reports_each_method_on_the_phantom_and_the_normal_dose_slice(mayo_root, tiny_checkpoint, tmp_path):
    from ctdenoise.evaluate.clean_check import run_clean_check
    from ctdenoise.evaluate.methods import clip_model_method

    cases = simulated_cases(mayo_root / "L067" / "full_1mm", 0.25, None, seed=0)
    methods = [classical_method("input"), clip_model_method(tiny_checkpoint, "tiny", "cpu"),
               clip_model_method(tiny_checkpoint, "tiny-half", "cpu", strength=0.5), classical_method("nlm-sigma")]
    record = run_clean_check(cases, methods, tmp_path / "clean", phantom_size=96)
    assert len(record["images"]) == 2 and "phantom" in record["images"]  # the phantom and the one case
    phantom = record["images"]["phantom"]
    assert set(phantom) == {"input", "tiny", "tiny-half"}  # nlm-sigma would be given a noise level of 0
    assert phantom["input"]["rmse_body_hu"] == 0.0
    assert phantom["tiny-half"]["rmse_body_hu"] == pytest.approx(0.5 * phantom["tiny"]["rmse_body_hu"], rel=0.02)
    assert (tmp_path / "clean" / "phantom.png").stat().st_size > 0
    assert "| phantom | tiny |" in (tmp_path / "clean" / "clean_check.md").read_text()


def test_model_variants_are_named_models_at_an_optional_strength(tmp_path):
    from ctdenoise.cli.evaluate import _variant

    assert _variant("new=default@0.7") == ("new", "default", 0.7)
    assert _variant("old=/models/old") == ("old", "/models/old", None)
    with pytest.raises(SystemExit) as usage:
        main(["evaluate", "--full", str(tmp_path), "--variant", "nameonly", "-o", str(tmp_path / "o")])
    assert usage.value.code == 2


def test_sweep_and_simulated_cases_take_the_reconstruction_kernel():
    from ctdenoise.errors import ConfigError
    from ctdenoise.evaluate.sweep import SweepSettings, noisy_input

    with pytest.raises(ConfigError, match="kernel"):
        SweepSettings(kernel="b30f")
    yy, xx = np.mgrid[:96, :96] - 48
    phantom = np.where(np.hypot(yy, xx) < 40, 40.0, -1000.0)[None].astype(np.float32)
    noise_std = {
        kernel: float((noisy_input(phantom, (0.7, 0.7), "physics", 0.25, np.random.default_rng(0), kernel) - phantom)[0, 38:58, 38:58].std())
        for kernel in ("smooth", "sharp")
    }
    assert noise_std["smooth"] < 0.7 * noise_std["sharp"]
