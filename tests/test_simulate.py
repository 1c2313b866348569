"""Specification of the noise models: Gaussian (paper protocol) and physics-based low dose."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from pydicom import dcmread
from pydicom.data import get_testdata_file

from ctdenoise.errors import ConfigError
from ctdenoise.intensity import hu_to_unit
from ctdenoise.iq import nps_2d, radial_nps
from ctdenoise.simulate import (
    KERNELS,
    MU_WATER_PER_MM,
    PAPER_SIGMA,
    add_gaussian_noise,
    bowtie_transmission,
    get_projector,
    simulate_low_dose,
)
from ctdenoise.transforms import RandGaussianNoiseUnit, RandGaussianNoiseUnitd, RandLowDose, RandLowDosed

SIZE = 128
SPACING_MM = 1.5
N_VIEWS = 360


def _radius_map(size: int = SIZE) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size] - size // 2
    return np.hypot(rows, cols)


def water_disk(radius_px: float = 50.0, size: int = SIZE) -> np.ndarray:
    """A noise-free water cylinder (0 HU) in air (-1000 HU)."""
    return np.where(_radius_map(size) <= radius_px, 0.0, -1000.0)


def centre(image: np.ndarray, radius_px: float = 30.0) -> np.ndarray:
    return image[_radius_map(image.shape[-1]) <= radius_px]


@pytest.fixture(scope="module")
def ct_slice() -> tuple[np.ndarray, float]:
    """pydicom's real 128x128 CT slice in HU and its pixel spacing."""
    ds = dcmread(get_testdata_file("CT_small.dcm", download=False))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return hu.astype(np.float64), float(ds.PixelSpacing[0])


# --- projector ------------------------------------------------------------------------------------


def test_projection_of_a_disk_matches_its_analytic_chord_lengths():
    radius, mu = 50.0, 0.01
    projector = get_projector(SIZE, N_VIEWS)
    sinogram = projector.project(np.where(_radius_map() <= radius, mu, 0.0))
    t = np.arange(projector.n_detectors) - projector.n_detectors // 2
    chord = 2.0 * mu * np.sqrt(np.clip(radius**2 - t**2, 0.0, None))
    inside = np.abs(t) < radius - 2
    assert sinogram.shape == (N_VIEWS, projector.n_detectors)
    assert np.abs(sinogram[:, inside] - chord[inside]).max() < 0.02 * chord.max()
    assert np.abs(sinogram[:, np.abs(t) > radius + 2]).max() < 0.005 * chord.max()


def test_noiseless_fbp_of_the_projection_reproduces_a_real_ct_slice(ct_slice):
    hu, spacing = ct_slice
    mu = MU_WATER_PER_MM * (1.0 + hu / 1000.0) * spacing
    projector = get_projector(SIZE, N_VIEWS)
    recon = projector.reconstruct(projector.project(mu), kernel="ramp")
    error_hu = 1000.0 * (recon - mu) / (MU_WATER_PER_MM * spacing)
    interior = np.abs(error_hu[16:-16, 16:-16])
    assert interior.mean() < 3.0
    assert np.percentile(interior, 99) < 10.0


def test_unknown_reconstruction_kernel_is_a_config_error_listing_the_known_ones():
    projector = get_projector(SIZE, N_VIEWS)
    with pytest.raises(ConfigError, match="kernel.*smooth, standard, sharp"):
        projector.reconstruct(np.zeros((N_VIEWS, projector.n_detectors)), kernel="shepp")


# --- kernels, bowtie, slice thickness ---------------------------------------------------------------

KERNEL_SIZE, KERNEL_SPACING_MM = 160, 0.7


def _noise_only(kernel: str, seed: int, **kwargs) -> np.ndarray:
    """Noise of a quarter-dose scan of a 48 mm water disk (the noise-free phantom subtracted)."""
    phantom = water_disk(radius_px=70.0, size=KERNEL_SIZE)
    noisy = simulate_low_dose(
        phantom, KERNEL_SPACING_MM, dose_fraction=0.25, n_views=360, kernel=kernel, input_has_noise=False,
        seed=seed, **kwargs,
    )
    return noisy - phantom


def _radial_nps_mean_frequency(noise_images: list[np.ndarray], roi: int = 40) -> float:
    """f_av (cycles/mm) of the radial NPS of the central ROI of each noise image (ctdenoise.iq, TG-233)."""
    start = KERNEL_SIZE // 2 - roi // 2
    rois = np.stack([noise[start : start + roi, start : start + roi] for noise in noise_images])
    return radial_nps(nps_2d(rois, KERNEL_SPACING_MM)).f_av


@pytest.mark.parametrize("name", ["smooth", "standard", "sharp"])
def test_each_clinical_kernel_gives_the_nps_mean_frequency_it_documents(name):
    measured = _radial_nps_mean_frequency([_noise_only(name, seed) for seed in range(3)])
    _, _, _, analytic = KERNELS[name].nps_shape(KERNEL_SPACING_MM)
    assert measured == pytest.approx(analytic, rel=0.15)


def test_kernels_order_from_smooth_to_sharp_in_peak_and_noise():
    peaks = [KERNELS[name].nps_shape(KERNEL_SPACING_MM)[2] for name in ("smooth", "standard", "sharp")]
    assert 0.14 < peaks[0] < 0.2 and 0.27 < peaks[1] < 0.35 and 0.5 < peaks[2] < 0.6
    stds = [centre(_noise_only(name, 11)).std() for name in ("smooth", "standard", "sharp")]
    assert stds[0] < stds[1] < stds[2]


def test_kernels_in_cycles_per_mm_keep_their_peak_at_every_pixel_size_and_grid_kernels_do_not():
    assert KERNELS["standard"].nps_shape(0.5)[2] == pytest.approx(KERNELS["standard"].nps_shape(0.9)[2], rel=0.02)
    assert KERNELS["hann"].nps_shape(0.5)[2] == pytest.approx(1.8 * KERNELS["hann"].nps_shape(0.9)[2], rel=0.02)


def test_a_scaled_kernel_has_in_pixels_the_grain_the_kernel_has_on_a_finer_grid():
    coarse_grid, fine_grid = 0.96, 0.43
    scaled = KERNELS["smooth"].scaled(fine_grid / coarse_grid, coarse_grid)
    peak_per_pixel = scaled.nps_shape(coarse_grid)[2] * coarse_grid
    assert peak_per_pixel == pytest.approx(KERNELS["smooth"].nps_shape(fine_grid)[2] * fine_grid, rel=0.02)
    measured = _radial_nps_mean_frequency([_noise_only(KERNELS["standard"].scaled(0.5, KERNEL_SPACING_MM), seed) for seed in range(3)])
    assert measured == pytest.approx(KERNELS["standard"].scaled(0.5, KERNEL_SPACING_MM).nps_shape(KERNEL_SPACING_MM)[3], rel=0.15)
    assert measured < 0.75 * KERNELS["standard"].nps_shape(KERNEL_SPACING_MM)[3]
    with pytest.raises(ConfigError, match="kernel_cutoff_scale"):
        KERNELS["smooth"].scaled(0.0, 1.0)


def test_a_bowtie_raises_the_noise_towards_the_edge_of_the_fan():
    def edge_to_centre(bowtie: str) -> float:
        noise = np.mean([_noise_only("standard", seed, bowtie=bowtie) ** 2 for seed in range(2)], axis=0)
        radius = _radius_map(KERNEL_SIZE)
        return float(np.sqrt(noise[(radius > 55) & (radius < 66)].mean() / noise[radius < 12].mean()))

    assert bowtie_transmission("body", np.array([0.0]))[0] == 1.0
    assert bowtie_transmission("head", np.array([100.0]))[0] < bowtie_transmission("body", np.array([100.0]))[0]
    assert edge_to_centre("body") > 1.1 * edge_to_centre("none")


def test_averaging_thin_slices_divides_the_noise_std_by_their_square_root():
    thin = centre(_noise_only("standard", 21)).std()
    thick = centre(_noise_only("standard", 21, slices_averaged=4)).std()
    assert thick / thin == pytest.approx(0.5, rel=0.15)


# --- physics-based low dose -----------------------------------------------------------------------


def test_noise_std_grows_as_one_over_sqrt_dose_on_a_water_disk():
    phantom = water_disk()
    std = {
        k: centre(simulate_low_dose(phantom, SPACING_MM, dose_fraction=k, input_has_noise=False, seed=1)).std()
        for k in (1.0, 0.25)
    }
    assert std[1.0] > 1.0
    assert std[0.25] / std[1.0] == pytest.approx(2.0, rel=0.15)


def test_mean_hu_is_preserved_at_quarter_dose():
    phantom = water_disk()
    noisy = simulate_low_dose(phantom, SPACING_MM, dose_fraction=0.25, input_has_noise=False, seed=2)
    assert abs(centre(noisy).mean()) < 3.0
    assert noisy.dtype == np.float32 and noisy.shape == phantom.shape


def test_a_real_scan_keeps_its_own_noise_and_receives_only_the_excess():
    phantom = water_disk()
    assert np.array_equal(simulate_low_dose(phantom, SPACING_MM, dose_fraction=1.0, seed=3), phantom)
    full = centre(simulate_low_dose(phantom, SPACING_MM, dose_fraction=1.0, input_has_noise=False, seed=3)).std()
    excess = centre(simulate_low_dose(phantom, SPACING_MM, dose_fraction=0.25, seed=3)).std()
    # var(quarter) - var(full) = (4 - 1) var(full)
    assert excess / full == pytest.approx(np.sqrt(3.0), rel=0.15)


def test_same_seed_same_noise_and_different_seed_different_noise(ct_slice):
    hu, spacing = ct_slice
    a = simulate_low_dose(hu, spacing, seed=7)
    assert np.array_equal(a, simulate_low_dose(hu, spacing, seed=7))
    assert not np.array_equal(a, simulate_low_dose(hu, spacing, seed=8))


def test_real_ct_slice_gets_quarter_dose_noise_without_bias(ct_slice):
    hu, spacing = ct_slice
    noisy = simulate_low_dose(hu, spacing, dose_fraction=0.25, seed=4)
    added = (noisy - hu)[16:-16, 16:-16]
    assert 2.0 < added.std() < 100.0
    assert abs(added.mean()) < 2.0


def test_stack_slices_get_independent_noise_and_rectangles_work():
    stack = np.stack([water_disk(size=96)[:, 8:-8]] * 2)  # (2, 96, 80)
    noisy = simulate_low_dose(stack, (SPACING_MM, SPACING_MM), input_has_noise=False, seed=5)
    assert noisy.shape == stack.shape
    assert not np.allclose(noisy[0], noisy[1])


def test_scanner_padding_below_minus_1024_is_left_alone():
    phantom = water_disk()
    phantom[_radius_map() > 62] = -3024.0
    noisy = simulate_low_dose(phantom, SPACING_MM, input_has_noise=False, seed=6)
    assert np.array_equal(noisy[phantom == -3024.0], phantom[phantom == -3024.0])


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"pixel_spacing_mm": (0.5, 0.8)}, "pixel_spacing_mm"),
        ({"pixel_spacing_mm": -1.0}, "pixel_spacing_mm"),
        ({"dose_fraction": 0.0}, "dose_fraction"),
        ({"dose_fraction": 1.5}, "dose_fraction"),
        ({"i0": 0.0}, "i0"),
        ({"electronic_noise_var": -1.0}, "electronic_noise_var"),
        ({"n_views": 1}, "n_views"),
        ({"kernel": "b30f"}, "kernel"),
        ({"bowtie": "wide"}, "bowtie"),
        ({"slices_averaged": 0}, "slices_averaged"),
    ],
)
def test_invalid_parameters_are_config_errors_naming_the_key(kwargs, key):
    arguments = {"pixel_spacing_mm": SPACING_MM, **kwargs}
    with pytest.raises(ConfigError, match=key):
        simulate_low_dose(water_disk(size=32), **arguments)


# --- Gaussian (paper protocol) --------------------------------------------------------------------


def test_gaussian_noise_has_the_requested_sigma_and_is_not_clipped():
    air = np.zeros((256, 256), dtype=np.float32)  # -1024 HU on the unit scale
    noisy = add_gaussian_noise(air, rng=0)
    assert noisy.dtype == np.float32
    assert noisy.std() == pytest.approx(PAPER_SIGMA, rel=0.02)
    assert noisy.min() < 0.0


def test_gaussian_noise_on_tensors_keeps_type_and_is_seeded():
    unit = hu_to_unit(torch.zeros(1, 64, 64))
    a = add_gaussian_noise(unit, 0.02, rng=3)
    assert isinstance(a, torch.Tensor) and a.dtype == torch.float32
    assert torch.equal(a, add_gaussian_noise(unit, 0.02, rng=3))
    assert (a - unit).std().item() == pytest.approx(0.02, rel=0.05)
    assert np.array_equal(add_gaussian_noise(np.zeros(5), rng=1), add_gaussian_noise(np.zeros(5), rng=1))


def test_gaussian_noise_rejects_a_generator_of_the_other_library():
    with pytest.raises(TypeError):
        add_gaussian_noise(np.zeros(4), rng=torch.Generator())
    with pytest.raises(TypeError):
        add_gaussian_noise(torch.zeros(4), rng=np.random.default_rng(0))


# --- MONAI transforms -----------------------------------------------------------------------------


def test_dictionary_transforms_compose_and_replay_with_a_random_state():
    image = MetaTensor(
        torch.from_numpy(water_disk(size=64)).float()[None],
        affine=torch.diag(torch.tensor([SPACING_MM, SPACING_MM, 1.0, 1.0], dtype=torch.float64)),
    )
    pipeline = Compose(
        [
            RandLowDosed(keys="image", dose_fraction=(0.1, 0.5), n_views=180, input_has_noise=False),
            RandGaussianNoiseUnitd(keys="image", sigma=(0.001, 0.002)),
        ]
    )
    first = pipeline.set_random_state(11)({"image": image, "label": image})
    second = pipeline.set_random_state(11)({"image": image, "label": image})
    assert torch.equal(first["image"], second["image"])
    assert isinstance(first["image"], MetaTensor) and first["image"].shape == (1, 64, 64)
    assert first["label"] is image
    assert (first["image"] - image).std() > 1.0


def test_keys_share_one_draw_and_prob_zero_is_identity():
    data = {"a": np.zeros((1, 16, 16), np.float32), "b": np.zeros((1, 16, 16), np.float32)}
    out = RandGaussianNoiseUnitd(keys=("a", "b")).set_random_state(0)(data)
    assert np.array_equal(out["a"], out["b"]) and out["a"].std() > 0
    assert RandGaussianNoiseUnitd(keys="a", prob=0.0)(data)["a"] is data["a"]
    assert RandLowDose(prob=0.0)(data["a"]) is data["a"]


def test_array_transforms_declare_backends_and_read_spacing():
    assert RandGaussianNoiseUnit.backend and RandLowDose.backend
    with pytest.raises(ConfigError, match="pixel_spacing_mm"):
        RandLowDose()(np.zeros((1, 32, 32)))
    noisy = RandLowDose(pixel_spacing_mm=SPACING_MM, n_views=90, input_has_noise=False).set_random_state(0)(
        torch.zeros(1, 32, 32)
    )
    assert isinstance(noisy, torch.Tensor) and noisy.std() > 0


def test_random_low_dose_draws_its_kernel_and_bowtie_from_the_lists_given():
    transform = RandLowDose(pixel_spacing_mm=SPACING_MM, n_views=90, kernel=["smooth", "sharp"],
                            bowtie=("none", "head"), input_has_noise=False).set_random_state(3)
    drawn = set()
    for _ in range(12):
        transform.randomize()
        drawn.add((transform._kernel, transform._bowtie))
    assert {k for k, _ in drawn} == {"smooth", "sharp"} and {b for _, b in drawn} == {"none", "head"}
    with pytest.raises(ConfigError, match="kernel"):
        RandLowDose(kernel=["smooth", "b30f"])
