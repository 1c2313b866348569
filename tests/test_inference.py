"""Specification of slice-wise inference and the MONAI transforms around it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, SaveImaged

from ctdenoise.errors import ConfigError
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.prepare import load_prepared, prepare
from ctdenoise.runtime.settings import InferenceSettings
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


def test_a_prepared_model_is_reused_and_gives_what_a_one_off_call_gives(tiny_model, hu_volume, monkeypatch):
    prepared = prepare(tiny_model, CPU)
    one_off = denoise_hu(tiny_model, hu_volume, CPU)
    copies: list[object] = []
    monkeypatch.setattr("ctdenoise.runtime.prepare.inference_copy", lambda *args: copies.append(args))
    np.testing.assert_allclose(denoise_hu(prepared, hu_volume), one_off, atol=1e-3)
    half = denoise_hu(prepared, hu_volume, replace(CPU, strength=0.5))  # the strength may change per call
    np.testing.assert_allclose(half, hu_volume + 0.5 * (one_off - hu_volume), atol=1e-3)
    assert copies == []  # neither call copied (nor BN-folded, nor exported) the network again


def test_a_prepared_model_refuses_settings_that_would_run_it_differently(tiny_model, hu_volume):
    prepared = prepare(tiny_model, CPU)
    with pytest.raises(ConfigError, match="prepared for .*prepare it again"):
        denoise_hu(prepared, hu_volume, InferenceSettings(device="cpu", batch_size=1))
    with pytest.raises(ConfigError, match="prepared for"):
        DenoiseSlices(prepared, settings=InferenceSettings(device="cpu", precision="bf16"))


def test_load_prepared_carries_label_folder_and_provenance(tiny_checkpoint):
    from ctdenoise.registry import model_label

    prepared = load_prepared(tiny_checkpoint, CPU)
    assert prepared.model_dir == tiny_checkpoint and prepared.label == model_label(tiny_checkpoint)
    assert prepared.provenance == f"CLIPDenoising-architecture model {prepared.label} (encoder: random init, frozen)"
    assert prepared.settings == CPU and prepared.backend in ("torch", "onnxruntime")
    assert prepare(prepared.network, CPU).label == "unlabelled"


def test_import_ctdenoise_is_light_and_exports_the_front_door():
    """``import ctdenoise`` imports neither torch nor pydicom; its front-door names load on first use."""
    code = (
        "import sys, ctdenoise\n"
        "assert 'torch' not in sys.modules and 'pydicom' not in sys.modules, sorted(sys.modules)\n"
        "ctdenoise.InferenceSettings(strength=0.5)\n"
        "assert 'torch' not in sys.modules\n"
        "from ctdenoise.runtime.settings import InferenceSettings\n"
        "from ctdenoise.runtime.denoise import denoise_volume\n"
        "from ctdenoise.io import Volume, read_volume, write_volume\n"
        "from ctdenoise.registry import load_model\n"
        "assert ctdenoise.denoise_volume is denoise_volume and ctdenoise.load_model is load_model\n"
        "assert (ctdenoise.read_volume, ctdenoise.write_volume, ctdenoise.Volume) == (read_volume, write_volume, Volume)\n"
        "assert set(ctdenoise.__all__) == {'CTDenoiseError', '__version__', *ctdenoise.LAZY_EXPORTS}\n"
        "assert set(ctdenoise.__all__) <= set(dir(ctdenoise))\n"
        "try:\n    ctdenoise.no_such_name\nexcept AttributeError as error:\n    assert 'no_such_name' in str(error)\n"
        "else:\n    raise AssertionError('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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
