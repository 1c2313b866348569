"""The image-quality measurements (ctdenoise.iq) against analytic answers and a second, independent method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ctdenoise.errors import ConfigError, InputError
from ctdenoise.iq import (
    DigitalPhantom,
    DiskTask,
    Insert,
    Roi,
    blurred_disk,
    dose_reduction,
    dprime_npw,
    dprime_npwe,
    find_layout,
    measure_noise,
    noise_only_images,
    nps_2d,
    radial_nps,
    roi_stack,
    ttf_circular_insert,
)
from ctdenoise.iq.ttf import TTF, crossing

PHANTOM = DigitalPhantom()


@pytest.fixture(scope="module")
def phantom_image() -> np.ndarray:
    return PHANTOM.image()


def white_scans(image: np.ndarray, sigma: float, n: int, seed: int = 0) -> np.ndarray:
    return image + np.random.default_rng(seed).normal(0.0, sigma, (n, *image.shape))


def test_noise_only_images_keep_one_scans_variance():
    scans = white_scans(np.zeros((64, 64)), 10.0, 2)
    noise = noise_only_images(scans)
    np.testing.assert_allclose(noise[0], (scans[0] - scans[1]) / np.sqrt(2), atol=1e-9)
    assert measure_noise(noise_only_images(white_scans(np.zeros((64, 64)), 10.0, 12)), [Roi(0, 0, 64)]) == \
        pytest.approx(10.0, rel=0.03)
    with pytest.raises(ConfigError, match="at least 2"):
        noise_only_images(scans[:1])


def test_white_noise_has_a_flat_nps_at_sigma_squared_pixel_area(phantom_image):
    sigma, spacing = 20.0, 0.8
    layout = PHANTOM.layout()
    noise = noise_only_images(white_scans(phantom_image, sigma, 10))
    assert measure_noise(noise, layout.rois) == pytest.approx(sigma, rel=0.02)
    nps = nps_2d(roi_stack(noise, layout.rois), spacing)
    assert nps.variance == pytest.approx(sigma**2, rel=0.03)  # the integral of the NPS is the variance
    radial = radial_nps(nps)
    level = sigma**2 * spacing**2
    assert np.median(radial.value) == pytest.approx(level, rel=0.05)
    assert np.all(np.abs(radial.value / level - 1) < 0.25)  # flat, ring by ring
    # the mean frequency of a flat radial profile on [df, Nyquist] is the middle of that range
    assert radial.f_av == pytest.approx((radial.frequency[0] + radial.frequency[-1]) / 2, rel=0.02)


def test_nps_of_gaussian_correlated_noise_matches_its_analytic_shape():
    """White noise filtered by a Gaussian of s pixels: NPS = sigma^2 dx dy |G(f)|^2, G = exp(-2 pi^2 s^2 f^2)."""
    rng = np.random.default_rng(1)
    spacing, s = 0.5, 1.5
    noise = ndimage.gaussian_filter(rng.normal(0, 30.0, (20, 128, 128)), (0, s, s), mode="wrap")
    rois = [Roi(r, c, 64) for r in (0, 64) for c in (0, 64)]
    radial = radial_nps(nps_2d(roi_stack(noise, rois), spacing))
    g2 = np.exp(-4 * np.pi**2 * (s * spacing) ** 2 * radial.frequency**2)
    analytic = 30.0**2 * spacing**2 * g2
    low = radial.frequency < 0.4
    np.testing.assert_allclose(radial.value[low], analytic[low], rtol=0.2)
    assert radial.f_av == pytest.approx(np.sum(radial.frequency * analytic) / np.sum(analytic), rel=0.05)


def test_nps_agrees_with_the_autocovariance_route():
    """Second method (Wiener-Khinchin): the Fourier transform of the circular autocovariance of each ROI."""
    rng = np.random.default_rng(2)
    rois = ndimage.uniform_filter(rng.normal(0, 10.0, (30, 48, 48)), (0, 3, 3), mode="wrap")
    spacing = (0.7, 0.7)
    nps = nps_2d(rois, spacing)
    autocov = np.zeros((48, 48))
    for roi in rois - rois.mean(axis=(1, 2), keepdims=True):
        autocov += np.array([[np.mean(roi * np.roll(roi, (i, j), (0, 1))) for j in range(48)] for i in range(48)])
    second = np.fft.fftshift(np.fft.fft2(autocov / len(rois)).real) * spacing[0] * spacing[1]
    np.testing.assert_allclose(nps.values, second, rtol=1e-6, atol=1e-9 * second.max())


@pytest.mark.parametrize("sigma_mm", [0.45, 0.6, 0.9, 1.5])
def test_ttf_of_a_gaussian_blurred_insert_is_the_gaussians_mtf(sigma_mm):
    phantom = DigitalPhantom(blur_sigma_mm=sigma_mm)
    image = phantom.image()
    for insert, rod in zip(phantom.inserts(), phantom.rods):
        ttf = ttf_circular_insert(image, (insert.row, insert.col), insert.radius_px, phantom.pixel_mm)
        assert ttf.contrast_hu == pytest.approx(rod.contrast_hu, rel=0.01)
        assert ttf.ttf50 == pytest.approx(phantom.analytic_ttf_at(0.5), rel=0.02)
        if phantom.analytic_ttf_at(0.1) < ttf.nyquist:
            assert ttf.ttf10 == pytest.approx(phantom.analytic_ttf_at(0.1), rel=0.03)
        low = ttf.frequency < ttf.nyquist
        np.testing.assert_allclose(ttf.value[low], phantom.analytic_ttf(ttf.frequency[low]), atol=0.03)


def slanted_edge_mtf(sigma_mm: float, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """A second, independent TTF: the slanted straight edge (ISO 12233 style) of the same Gaussian blur,
    its ESF projected along the edge, oversampled 4x, differentiated and Fourier transformed."""
    rows, cols = np.indices((128, 128)) * pixel
    angle = np.radians(5.0)
    signed = (cols - 64 * pixel) * np.cos(angle) - (rows - 64 * pixel) * np.sin(angle)
    from scipy.special import erf

    image = 100.0 * 0.5 * (1 + erf(signed / (np.sqrt(2) * sigma_mm)))
    step = pixel / 4
    index = np.rint(signed / step).astype(int)
    keep = np.abs(index) < 120
    esf = np.bincount(index[keep] + 120, weights=image[keep]) / np.maximum(np.bincount(index[keep] + 120), 1)
    lsf = np.gradient(esf) * np.hanning(esf.size)
    spectrum = np.abs(np.fft.rfft(lsf, 4096))
    return np.fft.rfftfreq(4096, step), spectrum / spectrum[0]


def test_ttf_agrees_with_a_slanted_edge_measurement():
    phantom = DigitalPhantom(blur_sigma_mm=0.7)
    insert = phantom.inserts()[1]
    ttf = ttf_circular_insert(phantom.image(), (insert.row, insert.col), insert.radius_px, phantom.pixel_mm)
    frequency, mtf = slanted_edge_mtf(0.7, phantom.pixel_mm)
    assert ttf.ttf50 == pytest.approx(crossing(frequency, mtf, 0.5), rel=0.03)
    assert ttf.ttf10 == pytest.approx(crossing(frequency, mtf, 0.1), rel=0.03)


@pytest.mark.parametrize("sigma", [10.0, 20.0])
def test_ttf_from_the_ensemble_mean_of_noisy_scans(phantom_image, sigma):
    """Within 10 % where the insert's contrast is at least ~10 times the noise of the ensemble mean
    (contrast * sqrt(n) / sigma): all four rods at 10 HU, all but the +35 HU rod at 20 HU (16 scans)."""
    scans = white_scans(phantom_image, sigma, 16, seed=3)
    mean = scans.mean(axis=0)
    for insert, rod in zip(PHANTOM.inserts(), PHANTOM.rods):
        if abs(rod.contrast_hu) * 4 / sigma < 10:
            continue
        ttf = ttf_circular_insert(mean, (insert.row, insert.col), insert.radius_px, PHANTOM.pixel_mm)
        assert ttf.ttf50 == pytest.approx(PHANTOM.analytic_ttf_at(0.5), rel=0.1), insert.name


def test_ttf_refuses_an_insert_at_the_border_or_without_contrast(phantom_image):
    with pytest.raises(ConfigError, match="border"):
        ttf_circular_insert(phantom_image, (5, 5), 10, 0.8)
    with pytest.raises(ConfigError, match="no contrast"):
        ttf_circular_insert(np.zeros((64, 64)), (32, 32), 10, 0.8)


def flat_ttf() -> TTF:
    frequency = np.linspace(0, 2, 50)
    return TTF(frequency, np.ones_like(frequency), 1.0, None, None, 1.0, np.zeros(1), np.zeros(1))


def test_npw_dprime_in_white_noise_is_the_matched_filter_snr():
    sigma, spacing = 10.0, 0.5
    noise = np.random.default_rng(4).normal(0, sigma, (400, 64, 64))
    nps = nps_2d(noise, spacing)
    task = DiskTask(diameter_mm=6.0, contrast_hu=20.0)
    expected = np.sqrt(task.contrast_hu**2 * np.pi * 3.0**2 / (sigma**2 * spacing**2))
    assert dprime_npw(nps, flat_ttf(), task) == pytest.approx(expected, rel=0.04)
    doubled = DiskTask(diameter_mm=6.0, contrast_hu=40.0)
    assert dprime_npw(nps, flat_ttf(), doubled) == pytest.approx(2 * dprime_npw(nps, flat_ttf(), task))
    assert dprime_npwe(nps, flat_ttf(), doubled) == pytest.approx(2 * dprime_npwe(nps, flat_ttf(), task))
    # half the noise power: d' up by sqrt 2; a blurring TTF lowers it
    quieter = nps_2d(noise / np.sqrt(2), spacing)
    assert dprime_npw(quieter, flat_ttf(), task) == pytest.approx(np.sqrt(2) * dprime_npw(nps, flat_ttf(), task))
    blurred = TTF(flat_ttf().frequency, np.exp(-flat_ttf().frequency * 3), 1.0, None, None, 1.0, np.zeros(1), np.zeros(1))
    assert dprime_npw(nps, blurred, task) < dprime_npw(nps, flat_ttf(), task)


def test_dose_reduction_potential():
    # input-like d' ~ sqrt(dose): a method with twice the d'^2 reaches the full-dose input at half dose
    method = {d: np.sqrt(2 * d) * 3.0 for d in (0.25, 0.35, 0.5, 1.0)}
    potential = dose_reduction(method, reference=3.0)
    assert potential.lowest_dose == 0.5
    assert potential.interpolated_dose == pytest.approx(0.5)
    assert potential.reduction_percent == pytest.approx(50.0)
    never = dose_reduction({0.25: 1.0, 1.0: 2.0}, reference=3.0)
    assert never.lowest_dose is None and never.interpolated_dose is None
    always = dose_reduction({0.25: 4.0, 1.0: 8.0}, reference=3.0)
    assert always.lowest_dose == 0.25 and always.interpolated_dose is None


def test_blurred_disk_is_exact_at_the_edge_and_conserves_area():
    distance = np.linspace(0, 20, 20001)
    profile = blurred_disk(distance, 10.0, 1.0)
    area = np.trapezoid(2 * np.pi * distance * profile, distance)
    assert area == pytest.approx(np.pi * 100, rel=1e-4)
    assert profile[0] == pytest.approx(1.0) and profile[-1] == pytest.approx(0.0, abs=1e-9)


def test_find_layout_finds_the_inserts_and_a_uniform_region(phantom_image):
    scans = white_scans(phantom_image, 20.0, 8, seed=5)
    layout = find_layout(scans, PHANTOM.pixel_mm)
    truth = PHANTOM.inserts()
    assert len(layout.inserts) == len(truth)
    for insert in truth:
        nearest = min(layout.inserts, key=lambda i: np.hypot(i.row - insert.row, i.col - insert.col))
        assert np.hypot(nearest.row - insert.row, nearest.col - insert.col) < 0.5
        assert nearest.radius_px == pytest.approx(insert.radius_px, abs=0.5)
    assert len(layout.rois) >= 4
    for roi in layout.rois:  # every ROI in water, away from the rods
        assert np.abs(roi.take(phantom_image)).max() < 1.0
    given = find_layout(scans, PHANTOM.pixel_mm, inserts=[Insert(72.7, 72.7, 12.5)])
    assert given.inserts == (Insert(72.7, 72.7, 12.5),)


def test_find_layout_says_when_there_is_no_phantom():
    with pytest.raises(InputError, match="scan_a: no phantom found"):
        find_layout(np.full((3, 64, 64), -1000.0), 0.8, source="scan_a")
    rng = np.random.default_rng(6)
    texture = ndimage.gaussian_filter(rng.normal(0, 200, (128, 128)), 2)  # anatomy-like: nothing uniform
    with pytest.raises(InputError, match="no uniform region"):
        find_layout(texture + rng.normal(0, 5, (4, 128, 128)), 0.8, source="scan_b")


def test_ttf50_standard_error_grows_as_the_contrast_to_noise_falls(phantom_image):
    from ctdenoise.iq.protocol import ttf50_spread

    scans = white_scans(phantom_image, 20.0, 8, seed=9)
    errors = {rod.name: ttf50_spread(scans, insert, (PHANTOM.pixel_mm,) * 2)
              for insert, rod in zip(PHANTOM.inserts(), PHANTOM.rods)}
    assert 0 < errors["bone"] < errors["acrylic"] < errors["soft lesion"]
    assert ttf50_spread(white_scans(phantom_image, 5.0, 8, seed=9), PHANTOM.inserts()[3], (0.8, 0.8)) < \
        errors["soft lesion"] / 2
