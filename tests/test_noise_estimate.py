"""The per-series noise estimate: right on known Gaussian noise, ~0 without noise, cheap, and blind to air."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from ctdenoise.noise_estimate import noise_hu_local_std_mode


def phantom(slices: int = 6, size: int = 192) -> np.ndarray:
    """A piecewise-constant body (40 HU) with inserts (fat, water, liver, enhanced vessel, bone) in air,
    plus a gentle ramp so that the body is not flat."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    c = size / 2
    body = ((yy - c) / (0.43 * size)) ** 2 + ((xx - c) / (0.36 * size)) ** 2 < 1
    image = np.where(body, 40.0 + 0.2 * (xx - c), -1000.0)
    for cy, cx, r, value in [(0.4, 0.4, 0.1, -90.0), (0.62, 0.58, 0.12, 0.0), (0.45, 0.65, 0.06, 150.0),
                             (0.66, 0.36, 0.05, 900.0), (0.35, 0.62, 0.07, 60.0)]:
        image[(yy - cy * size) ** 2 + (xx - cx * size) ** 2 < (r * size) ** 2] = value
    return np.repeat(image[None], slices, axis=0)


@pytest.mark.parametrize("sigma", [10.0, 20.0, 40.0])
def test_estimate_is_within_15_percent_of_known_gaussian_noise(sigma):
    clean = phantom()
    noisy = clean + np.random.default_rng(int(sigma)).normal(0.0, sigma, clean.shape)
    estimate = noise_hu_local_std_mode(noisy.astype(np.float32))
    assert estimate == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize("sigma", [10.0, 20.0, 40.0])
def test_estimate_reads_the_pixel_noise_of_correlated_noise_too(sigma):
    """CT noise is correlated by the reconstruction kernel: the estimate is its pixel standard deviation."""
    clean = phantom()
    noise = ndimage.gaussian_filter(np.random.default_rng(int(sigma)).normal(0.0, 1.0, clean.shape), (0, 0.8, 0.8))
    noise *= sigma / noise.std()
    assert noise_hu_local_std_mode(clean + noise) == pytest.approx(sigma, rel=0.15)


def test_noiseless_piecewise_constant_phantom_reads_near_zero():
    assert noise_hu_local_std_mode(phantom()) < 0.5
    assert noise_hu_local_std_mode(np.where(phantom() > -500, 40.0, -1000.0)) < 0.05  # no ramp: no noise at all


def test_noise_outside_soft_tissue_does_not_count():
    clean = phantom()
    noisy = clean.copy()
    rng = np.random.default_rng(7)
    air = clean < -500
    noisy[air] += rng.normal(0.0, 200.0, int(air.sum()))  # air noise only: soft tissue stays clean
    assert noise_hu_local_std_mode(noisy) < 0.5


def test_no_soft_tissue_gives_none_and_a_2d_slice_works():
    assert noise_hu_local_std_mode(np.full((3, 64, 64), -1000.0)) is None
    noisy = phantom(1)[0] + np.random.default_rng(1).normal(0, 20, (192, 192))
    assert noise_hu_local_std_mode(noisy) == pytest.approx(20.0, rel=0.15)


def test_estimate_reads_few_slices_and_is_cheap():
    rng = np.random.default_rng(2)
    volume = (phantom(200, 256) + rng.normal(0, 15, (200, 256, 256))).astype(np.float32)
    before = volume.copy()
    started = time.perf_counter()
    estimate = noise_hu_local_std_mode(volume)
    assert time.perf_counter() - started < 5.0  # a few slices, not 200
    assert estimate == pytest.approx(15.0, rel=0.15)
    np.testing.assert_array_equal(volume, before)  # the input is not modified
