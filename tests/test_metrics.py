"""Specification of the metric protocols: hand-computed values and agreement with skimage and MONAI."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from monai.metrics import PSNRMetric, SSIMMetric
from pydicom import dcmread
from pydicom.data import get_testdata_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ctdenoise.errors import ConfigError, InputError
from ctdenoise.evaluate import PROTOCOLS, compute_metrics, compute_volume_metrics, get_protocol
from ctdenoise.metrics import SSIM_K1, psnr, ssim

ALL_PROTOCOLS = ("redcnn", "clip-paper", "ldctbench")


@pytest.fixture(scope="module")
def slice_pair() -> tuple[np.ndarray, np.ndarray]:
    """pydicom's real CT slice (HU) as reference, and a noisy, slightly blurred copy as prediction."""
    ds = dcmread(get_testdata_file("CT_small.dcm", download=False))
    ref = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    rng = np.random.default_rng(0)
    pred = 0.8 * ref + 0.2 * np.roll(ref, 1, axis=0) + rng.normal(0.0, 25.0, ref.shape)
    return pred, ref.astype(np.float64)


# --- hand-computed values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected_psnr"),
    [
        ("redcnn", 20 * math.log10(400 / 20)),
        ("clip-paper", 20 * math.log10(4096 / 20)),
        ("ldctbench", 20 * math.log10(399 / 20)),  # DICOM linear window: slope 1 / (width - 1)
    ],
)
def test_a_uniform_20_hu_error_gives_the_hand_computed_psnr_and_rmse(name, expected_psnr):
    ref = np.zeros((16, 16))
    result = compute_metrics(ref + 20.0, ref, name)
    assert result["psnr"] == pytest.approx(expected_psnr, abs=1e-9)
    assert result["rmse_hu"] == pytest.approx(20.0, abs=1e-9)
    assert result["protocol"] == get_protocol(name).label


def test_redcnn_clips_before_comparing():
    ref = np.full((16, 16), 240.0)
    result = compute_metrics(np.full((16, 16), 1000.0), ref, "redcnn")
    assert result == {"psnr": math.inf, "ssim": 1.0, "rmse_hu": 0.0, "protocol": "redcnn"}
    assert compute_metrics(np.full((16, 16), 1000.0), ref, "clip-paper")["rmse_hu"] == pytest.approx(760.0)


def test_ssim_of_constant_images_is_the_luminance_term():
    protocol = get_protocol("redcnn")
    a, b = np.full((20, 20), 100.0), np.full((20, 20), 50.0)
    c1 = (SSIM_K1 * protocol.data_range) ** 2
    assert ssim(a, b, protocol) == pytest.approx((2 * 100 * 50 + c1) / (100**2 + 50**2 + c1), rel=1e-12)


@pytest.mark.parametrize("name", ALL_PROTOCOLS)
def test_identical_images_have_ssim_one_and_infinite_psnr(name, slice_pair):
    _, ref = slice_pair
    result = compute_metrics(ref, ref, name)
    assert result["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert result["psnr"] == math.inf and result["rmse_hu"] == 0.0


def test_psnr_is_ten_log_of_peak_over_mse():
    mse = (0.0**2 + 2.0**2) / 2
    assert psnr(np.array([0.0, 2.0]), np.array([0.0, 0.0]), data_range=4.0) == pytest.approx(10 * math.log10(16 / mse))


# --- agreement with skimage and MONAI -------------------------------------------------------------


def _skimage_ssim(pred: np.ndarray, ref: np.ndarray, name: str) -> float:
    protocol = get_protocol(name)
    if protocol.ssim_window == "gaussian":
        return structural_similarity(
            ref, pred, data_range=protocol.data_range,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
    # skimage's defaults (7x7 uniform window, sample covariance), as ldct-benchmark calls it
    return structural_similarity(ref, pred, data_range=protocol.data_range)


@pytest.mark.parametrize("name", ALL_PROTOCOLS)
def test_agrees_with_skimage_on_a_real_slice(name, slice_pair):
    pred, ref = slice_pair
    protocol = get_protocol(name)
    result = compute_metrics(pred, ref, protocol)
    pred_image, ref_image = protocol.image(pred), protocol.image(ref)
    assert result["ssim"] == pytest.approx(_skimage_ssim(pred_image, ref_image, name), abs=1e-10)
    expected_psnr = peak_signal_noise_ratio(ref_image, pred_image, data_range=protocol.data_range)
    assert result["psnr"] == pytest.approx(expected_psnr, abs=1e-10)
    assert 0.3 < result["ssim"] < 0.999


def _monai(pred_image: np.ndarray, ref_image: np.ndarray, protocol) -> tuple[float, float]:
    y_pred, y = (torch.from_numpy(x)[None, None] for x in (pred_image, ref_image))
    ssim_metric = SSIMMetric(
        spatial_dims=2, data_range=protocol.data_range, kernel_type=protocol.ssim_window,
        win_size=protocol.ssim_size, kernel_sigma=protocol.ssim_sigma,
    )
    return ssim_metric(y_pred, y).item(), PSNRMetric(max_val=protocol.data_range)(y_pred, y).item()


@pytest.mark.parametrize("name", ["redcnn", "clip-paper"])
def test_gaussian_protocols_agree_with_monai_to_float32_precision(name, slice_pair):
    pred, ref = slice_pair
    protocol = get_protocol(name)
    result = compute_metrics(pred, ref, protocol)
    monai_ssim, monai_psnr = _monai(protocol.image(pred), protocol.image(ref), protocol)
    assert result["ssim"] == pytest.approx(monai_ssim, abs=1e-5)  # MONAI computes SSIM in float32
    assert result["psnr"] == pytest.approx(monai_psnr, abs=1e-6)


def test_ldctbench_differs_from_monai_only_by_the_sample_covariance(slice_pair):
    pred, ref = slice_pair
    protocol = get_protocol("ldctbench")
    pred_image, ref_image = protocol.image(pred), protocol.image(ref)
    monai_ssim, _ = _monai(pred_image, ref_image, protocol)
    population = dataclasses.replace(protocol, ssim_sample_covariance=False)
    assert ssim(pred_image, ref_image, population) == pytest.approx(monai_ssim, abs=1e-5)
    assert ssim(pred_image, ref_image, protocol) != pytest.approx(monai_ssim, abs=1e-5)


# --- protocols by name, volumes, errors -----------------------------------------------------------


def test_protocol_table_matches_design():
    assert set(PROTOCOLS) == set(ALL_PROTOCOLS)
    redcnn, clip, bench = (get_protocol(n) for n in ALL_PROTOCOLS)
    assert (redcnn.hu_range, redcnn.data_range, redcnn.ssim_size) == ((-160.0, 240.0), 400.0, 11)
    assert (clip.hu_range, clip.data_range, clip.ssim_size) == ((-1024.0, 3072.0), 4096.0, 11)
    assert (bench.data_range, bench.ssim_size, bench.ssim_window, bench.rmse_hu_range) == (
        1.0, 7, "uniform", (-1024.0, 1900.0)
    )


def test_ldctbench_anatomy_picks_the_window_and_names_it():
    chest = get_protocol("ldctbench", anatomy="chest")
    assert (chest.window.center, chest.window.width) == (-600.0, 1500.0)
    assert chest.label == "ldctbench:chest" and get_protocol("ldctbench:chest") == chest
    assert get_protocol("ldctbench:head").window.width == 80.0
    assert get_protocol("redcnn", anatomy="chest") == PROTOCOLS["redcnn"]


def test_unknown_protocol_or_anatomy_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError, match="redcnn, clip-paper, ldctbench"):
        get_protocol("mayo")
    with pytest.raises(ConfigError, match="abdomen, chest, head"):
        get_protocol("ldctbench", anatomy="knee")


def test_volume_metrics_are_per_slice_and_name_the_protocol(slice_pair):
    pred, ref = slice_pair
    rows = compute_volume_metrics(torch.from_numpy(np.stack([pred, ref])), np.stack([ref, ref]), "clip-paper")
    assert [row["slice"] for row in rows] == [0, 1]
    assert rows[0] == {"slice": 0, **compute_metrics(pred, ref, "clip-paper")}
    assert rows[1]["psnr"] == math.inf and all(row["protocol"] == "clip-paper" for row in rows)


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        (np.zeros((16, 16)), np.zeros((16, 17))),
        (np.zeros((4, 16, 16)), np.zeros((4, 16, 16))),
        (np.full((16, 16), np.nan), np.zeros((16, 16))),
        (np.zeros((8, 8)), np.zeros((8, 8))),  # smaller than the 11x11 window
    ],
)
def test_unusable_inputs_are_input_errors(pred, ref):
    with pytest.raises(InputError):
        compute_metrics(pred, ref, "redcnn")
