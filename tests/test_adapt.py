"""``ctdenoise adapt``: a run writes a loadable model folder with its card and no identifiers from the input,
an interrupted run resumes, unusable inputs are skipped with the reason, the default is the image-only method and
neighbours refuse thick or short series, and the guard refuses a model made worse unless --force. Small phantoms
and a few iterations of the shipped model keep this fast; the method's measurement is scripts/measure_adapt.py
(with scripts/neighbour_mismatch.py for why neighbours fail)."""

from __future__ import annotations

import importlib.util
import json
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ctdenoise.adapt import AdaptSettings, adapt, guard_score, refuses, work_dir_for
from ctdenoise.adapt.data import NoisySeries
from ctdenoise.adapt.pairs import choose_method, measure_texture
from ctdenoise.cli import main
from ctdenoise.cli.adapt import EXIT_REFUSED
from ctdenoise.jobs.interrupt import StopRequested, StopSignals

PATIENT = "DOE^JANE-adapt-secret"
ROOT = Path(__file__).resolve().parents[1]


def phantom(slices: int, size: int = 48) -> np.ndarray:
    """A noiseless body-like section stack (HU): soft tissue with a brighter disc and a bone spot, slowly
    changing along z."""
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    stack = []
    for z in range(slices):
        image = np.full((size, size), -1000.0)
        image[np.hypot(yy, xx) < size * 0.45] = 40.0
        image[np.hypot(yy - 6, xx + 5 + z * 0.3) < 7] = 120.0
        image[np.hypot(yy + 10, xx - 8) < 3] = 700.0
        stack.append(ndimage.gaussian_filter(image, 0.7))
    return np.array(stack, dtype=np.float32)


def noisy(clean: np.ndarray, sigma_hu: float = 30.0, seed: int = 0) -> np.ndarray:
    """``clean`` plus spatially correlated noise of about ``sigma_hu``, independent between slices."""
    rng = np.random.default_rng(seed)
    noise = np.array([ndimage.gaussian_filter(rng.standard_normal(clean.shape[1:]), 0.8) for _ in clean])
    return (clean + noise * sigma_hu / noise.std()).astype(np.float32)


def write_series(path, hu: np.ndarray, slice_mm: float = 1.0):
    """``hu`` (slices, rows, cols) as a NIfTI file named after a patient (the name must not reach the model)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.transpose(hu, (2, 1, 0)), np.diag([-0.7, -0.7, slice_mm, 1.0])), path)
    return path


@pytest.fixture
def site(tmp_path):
    tree = tmp_path / "site"
    write_series(tree / PATIENT / "scan.nii.gz", noisy(phantom(12, size=128)))  # room for 32-pixel texture patches
    (tree / "notes.txt").write_text("not an image")
    write_series(tree / "tiny" / "scout.nii.gz", noisy(phantom(3, size=24)))  # smaller than the crop
    return tree


#: Two steps at a learning rate that leaves the model as it was: the guard accepts it (equal scores).
FAST = ["--iterations", "2", "--crop", "32", "--batch-size", "2", "--lr", "1e-9", "--no-progress"]


def test_a_run_writes_a_loadable_model_with_its_card_and_no_identifiers(site, tmp_path, caplog):
    from ctdenoise.registry import load_model

    out = tmp_path / "adapted"
    assert main(["adapt", str(site), "-o", str(out), *FAST]) == 0
    model = load_model(out)
    assert model.config.in_channels == 1
    card = (out / "MODEL_CARD.md").read_text()
    assert "# Adapted model" in card and "recorrupt" in card and "Base model card" in card
    summary = json.loads((out / "config.json").read_text())["training_summary"]["adaptation"]
    assert summary["series"] == 1 and summary["slices"] == 12 and summary["iterations"] == 2
    assert summary["skipped_inputs"] >= 1
    table = json.loads((out / "strength.json").read_text())
    assert "inherited" in table["fitted_on"]["reason"]
    for file in out.iterdir():
        assert PATIENT not in file.read_text(errors="ignore") and str(site) not in file.read_text(errors="ignore")
    assert "smaller than the 32-pixel training crop" in caplog.text
    assert not work_dir_for(out).exists()


def test_an_interrupted_run_resumes_to_the_same_plan(site, tmp_path):
    out = tmp_path / "adapted"
    settings = AdaptSettings(iterations=3, crop=32, batch_size=2, lr=1e-9)
    stop = StopSignals()

    def interrupt(done: int, planned: int) -> None:
        if done == 1:
            stop.handle(signal.SIGINT)

    with pytest.raises(StopRequested):
        adapt([site], out, settings=settings, stop=stop, on_step=interrupt)
    assert not out.exists()
    assert [p.name for p in (work_dir_for(out) / "checkpoints").iterdir()] == ["iter_0000001"]
    with pytest.raises(Exception, match="--resume"):
        adapt([site], out, settings=settings)
    steps: list[int] = []
    result = adapt([site], out, settings=settings, resume=True, on_step=lambda done, planned: steps.append(done))
    assert steps == [2, 3] and result.model_dir == out and (out / "model.safetensors").is_file()


def test_the_guard_refuses_a_model_made_worse_and_force_writes_it(site, tmp_path, capsys):
    out = tmp_path / "harmed"
    harmful = ["--iterations", "2", "--crop", "32", "--batch-size", "2", "--lr", "3", "--no-progress"]
    assert main(["adapt", str(site), "-o", str(out), *harmful]) == EXIT_REFUSED
    assert "refused" in capsys.readouterr().err and not out.exists()
    assert main(["adapt", str(site), "-o", str(out), *harmful, "--resume", "--force"]) == 0
    summary = json.loads((out / "config.json").read_text())["training_summary"]["adaptation"]
    assert summary["guard"]["refused"] and "refused by the guard" in (out / "MODEL_CARD.md").read_text()


def test_the_guard_measure_prefers_a_denoiser_to_the_identity_and_to_a_blur():
    clean = phantom(4)
    noisy_slices = list(noisy(clean))
    good = guard_score(noisy_slices, [c + 0.2 * (n - c) for c, n in zip(clean, noisy_slices)])  # 80 % of the noise out
    assert refuses(good, guard_score(noisy_slices, noisy_slices))  # removes nothing
    assert refuses(good, guard_score(noisy_slices, [ndimage.gaussian_filter(n, 4.0) for n in noisy_slices]))
    assert refuses(good, guard_score(noisy_slices, [np.full_like(n, np.nan) for n in noisy_slices]))
    assert not refuses(good, good)


def test_the_default_is_the_image_only_method_and_neighbours_refuse_thick_or_short_series():
    thin = NoisySeries(noisy(phantom(8)), 1.0)
    thick = NoisySeries(noisy(phantom(8)), 5.0)
    short = NoisySeries(noisy(phantom(4)), 1.0)
    assert choose_method(None, [thin, thick])[0] == "recorrupt"
    assert choose_method("neighbours", [thin]) == ("neighbours", "requested")
    with pytest.raises(ValueError, match="5 mm apart are too thick"):
        choose_method("neighbours", [thin, thick])
    with pytest.raises(ValueError, match="4 slice"):
        choose_method("neighbours", [short])
    with pytest.raises(ValueError, match="unknown method"):
        choose_method("auto", [thin])


def test_the_noise_texture_has_the_measured_level_and_grain():
    flat = np.full((6, 128, 128), 40.0, dtype=np.float32)
    series = [NoisySeries(noisy(flat, sigma_hu=25.0, seed=3), 1.0)]
    texture = measure_texture(series, np.random.default_rng(0))
    sample = texture.sample((128, 128), np.random.default_rng(1))
    assert sample.std() == pytest.approx(25.0, rel=0.15)
    lag1 = lambda a: np.corrcoef(a[:, 1:].ravel(), a[:, :-1].ravel())[0, 1]  # noqa: E731
    assert lag1(sample) == pytest.approx(lag1(series[0].hu[0] - 40.0), abs=0.1)


def test_the_neighbour_mismatch_script_is_zero_for_anatomy_linear_in_z_and_large_for_a_step():
    spec = importlib.util.spec_from_file_location("neighbour_mismatch", ROOT / "scripts" / "neighbour_mismatch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ramp = np.stack([np.full((16, 16), 20.0 + 3.0 * z) for z in range(6)])
    assert module.neighbour_mismatch(ramp)["soft_tissue_rms_hu"] == pytest.approx(0.0, abs=1e-9)
    step = ramp.copy()
    step[3:, :8] = 1000.0  # bone appears from slice 3 on: the mean of slices 2 and 4 is half bone
    assert module.neighbour_mismatch(step)["body_rms_hu"] > 100
