"""Specification of slice-wise inference and the MONAI transforms around it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, SaveImaged

from ctdenoise.errors import ConfigError
from ctdenoise.inference import InferenceSettings, denoise_hu
from ctdenoise.transforms import DenoiseSlices, DenoiseSlicesd, HUToModelRange, HUToModelRanged

CPU = InferenceSettings(device="cpu")


@pytest.fixture(scope="module")
def hu_volume() -> np.ndarray:
    """Three 40x56 slices: a soft-tissue disk in air with noise, in HU."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :56]
    disk = ((yy - 20) ** 2 + (xx - 28) ** 2 < 15**2).astype(np.float32)
    clean = -1000.0 + 1040.0 * disk
    return np.stack([clean + rng.normal(0, 30, clean.shape) for _ in range(3)]).astype(np.float32)


def test_denoise_hu_keeps_shape_and_is_deterministic(tiny_model, hu_volume):
    first = denoise_hu(tiny_model, hu_volume, CPU)
    second = denoise_hu(tiny_model, hu_volume, CPU)
    assert first.shape == hu_volume.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)


def test_denoise_hu_does_not_depend_on_batch_size(tiny_model, hu_volume):
    one = denoise_hu(tiny_model, hu_volume, InferenceSettings(device="cpu", batch_size=1))
    three = denoise_hu(tiny_model, hu_volume, InferenceSettings(device="cpu", batch_size=3))
    np.testing.assert_allclose(one, three, atol=1e-2)


def test_denoise_hu_accepts_a_single_slice_and_reports_progress(tiny_model, hu_volume):
    done: list[int] = []
    out = denoise_hu(tiny_model, hu_volume[0], CPU, progress=done.append)
    assert out.shape == hu_volume[0].shape
    assert sum(done) == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"device": "tpu"}, "device"), ({"precision": "fp8"}, "precision"), ({"batch_size": 0}, "batch_size")],
)
def test_invalid_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        InferenceSettings(**kwargs)


def test_hu_to_model_range_round_trips_through_inverse():
    hu = MetaTensor(torch.tensor([[[-1024.0, -500.0, 0.0, 40.0, 3072.0]]]))
    transform = HUToModelRange()
    unit = transform(hu)
    torch.testing.assert_close(unit.as_tensor(), torch.tensor([[[0.0, 0.1279296875, 0.25, 0.259765625, 1.0]]]))
    torch.testing.assert_close(transform.inverse(unit).as_tensor(), hu.as_tensor())


def test_slice_inferer_on_model_range_equals_denoise_slices(tiny_model, hu_volume):
    """The two documented MONAI routes (transform on HU; SliceInferer on model range) agree."""
    volume = MetaTensor(torch.from_numpy(np.moveaxis(hu_volume, 0, -1).copy())[None])  # (1, X, Y, Z)
    via_transform = DenoiseSlices(tiny_model, spatial_dim=2, settings=CPU)(volume)
    to_unit = HUToModelRanged(keys="image")
    data = to_unit({"image": volume})
    with torch.inference_mode():
        pred = SliceInferer(roi_size=(-1, -1), spatial_dim=2, sw_batch_size=2)(data["image"][None], tiny_model.eval())
    data["pred"] = pred[0]
    inverted = Invertd(keys="pred", transform=to_unit, orig_keys="image")(data)
    torch.testing.assert_close(torch.as_tensor(inverted["pred"]), via_transform.as_tensor(), atol=0.05, rtol=0)


def test_monai_pipeline_keeps_nifti_geometry(tiny_model, hu_volume, tmp_path):
    affine = np.array([[-0.7, 0, 0, 120.0], [0, -0.7, 0, 90.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(hu_volume, 0, -1), affine), src)
    pipeline = Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image"),
            DenoiseSlicesd(keys="image", model=tiny_model, spatial_dim=2, settings=CPU),
            SaveImaged(keys="image", output_dir=tmp_path / "out", output_postfix="denoised", separate_folder=False,
                       resample=False, output_dtype=np.float32),
        ]
    )
    pipeline({"image": str(src)})
    written = nib.load(tmp_path / "out" / "scan_denoised.nii.gz")
    assert written.shape == hu_volume.shape[1:] + hu_volume.shape[:1]
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    expected = np.moveaxis(denoise_hu(tiny_model, hu_volume, CPU), 0, -1)
    np.testing.assert_allclose(written.get_fdata(), expected, atol=0.05)
