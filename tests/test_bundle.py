"""The MONAI bundle in pipelines/ct_clip_denoise verifies and denoises a NIfTI file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "pipelines" / "ct_clip_denoise" / "configs"


def test_metadata_verifies_against_the_bundle_schema():
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(CONFIGS / "metadata_schema.json"))


def test_network_input_and_output_match_the_metadata(tiny_checkpoint):
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.yaml"),
        device="cpu",
        n=2,
        model_dir=str(tiny_checkpoint),
    )


@pytest.mark.parametrize("strength", [None, 0.5])
def test_bundle_run_denoises_a_nifti_file_in_its_geometry(tiny_checkpoint, tmp_path, strength):
    """Without --strength the bundle uses DEFAULT_STRENGTH, as the CLI does; with it, the same blend."""
    affine = np.array([[0.8, 0, 0, -100.0], [0, 0.8, 0, -80.0], [0, 0, 3.0, 12.0], [0, 0, 0, 1]])
    hu = np.random.default_rng(1).normal(40.0, 25.0, (48, 40, 2)).astype(np.float32)
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), src)
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(CONFIGS / "inference.yaml"),
        "--input_file", str(src), "--output_dir", str(tmp_path / "out"), "--model_dir", str(tiny_checkpoint),
    ] + ([] if strength is None else ["--strength", str(strength)])
    subprocess.run(command, check=True, cwd=tmp_path, capture_output=True, timeout=300)
    out = nib.load(tmp_path / "out" / "ct_denoised.nii.gz")
    assert out.shape == hu.shape
    np.testing.assert_allclose(out.affine, affine, atol=1e-5)
    from ctdenoise.model import load_checkpoint
    from ctdenoise.runtime.denoise import denoise_hu
    from ctdenoise.runtime.options import DEFAULT_STRENGTH
    from ctdenoise.runtime.settings import InferenceSettings

    settings = InferenceSettings(device="cpu", strength=DEFAULT_STRENGTH if strength is None else strength)
    expected = denoise_hu(load_checkpoint(tiny_checkpoint), np.moveaxis(hu, -1, 0), settings)
    np.testing.assert_allclose(out.get_fdata(), np.moveaxis(expected, 0, -1), atol=0.05)


def test_bundle_strength_defaults_to_the_shared_constant():
    from monai.bundle import ConfigParser

    from ctdenoise.runtime.options import DEFAULT_STRENGTH

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.yaml"))
    assert parser.get_parsed_content("strength") == DEFAULT_STRENGTH
    assert parser.get("denoise")["transforms"][2]["strength"] == "@strength"
