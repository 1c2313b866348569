"""Specification of ``ctdenoise train``: recipes are validated by key, training lowers the loss,
resuming continues exactly where the run stopped, and two torchrun processes train together.

Data: two "patients" built from pydicom's real CT_small.dcm (128x128); crops of 32x32 keep it fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ctdenoise.cli import main as cli_main
from ctdenoise.errors import ConfigError, OutputError
from ctdenoise.intensity import hu_to_unit
from ctdenoise.model import load_checkpoint
from ctdenoise.training import load_train_config, train, train_config_from_dict
from ctdenoise.training.config import AugmentConfig, DataConfig, NoiseConfig
from ctdenoise.training.data import split_series
from ctdenoise.training.loop import BEST_MODEL_DIR, CHECKPOINTS, LOG_FILE, MODEL_DIR
from ctdenoise.training.pairs import dihedral, draw_dose, mixup, noisy_unit
from ctdenoise.training.state import OPTIMIZER_FILE, checkpoint_dir, read_state

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_root(build_series, tmp_path: Path) -> Path:
    """``data/patient_a`` (2 slices) and ``data/patient_b`` (1 slice): real CT, distinct series."""
    build_series([0.0, 5.0], name="data/patient_a", source="CT_small.dcm")
    build_series([0.0], name="data/patient_b", source="CT_small.dcm")
    return tmp_path / "data"


def tiny_recipe(data_root: Path, **overrides) -> dict:
    """A recipe on 32x32 crops that trains in seconds on a CPU."""
    recipe = {
        "data": {"root": str(data_root), "split_by": "patient", "validation": ["patient_b"]},
        "encoder_weights": "random",
        "noise": {"kind": "gaussian"},
        "optim": {"lr": 1.0e-3},
        "validation": {"every": 0},
        "iterations": 6,
        "batch_size": 2,
        "crop_size": 32,
        "checkpoint_every": 3,
        "log_every": 1,
        "num_threads": 1,
        "device": "cpu",
    }
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if name:
            recipe.setdefault(section, {})[name] = value
        else:
            recipe[key] = value
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def log_events(run: Path, event: str) -> list[dict]:
    lines = (run / LOG_FILE).read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


# ---------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"iterationz": 5}, "iterationz"),
        ({"optim": {"lrate": 0.1}}, "optim.lrate"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"optim": {"lr": -1.0}}, "optim.lr"),
        ({"crop_size": 50}, "crop_size"),
        ({"batch_size": True}, "batch_size"),
        ({"noise": {"kind": "poisson"}}, "noise.kind"),
        ({"noise": {"dose_range": [0.5, 0.1]}}, "noise.dose_range"),
        ({"validation": {"protocols": ["psnr-db"]}}, "validation.protocols"),
        ({"validation": {"levels": [{"sigma": 0}]}}, "validation.levels.sigma"),
        ({"validation": {"levels": []}}, "validation.levels"),
        ({"validation": {"levels": [{"kind": "none"}, {"kind": "none"}]}}, "validation.levels"),
        ({"noise": {"kind": "mixed", "gaussian_share": 0.7, "clean_share": 0.5}}, "noise.clean_share"),
        ({"noise": {"kind": "physics", "clean_share": 0.1}}, "noise.kind"),
        ({"noise": {"dose_sampling": "log"}}, "noise.dose_sampling"),
        ({"precision": "fp8"}, "precision"),
        ({"model": {"encoder_name": "RN18"}}, "model.encoder_name"),
        ({"model": {"depth": 3}}, "model.depth"),
        ({"augment": {"mixup_prob": 2}}, "augment.mixup_prob"),
    ],
)
def test_a_bad_recipe_is_a_config_error_naming_the_key(tmp_path: Path, change: dict, key: str) -> None:
    recipe = {"data": {"root": "anywhere", "validation": ["p"]}}
    for section, value in change.items():
        recipe[section] = {**recipe.get(section, {}), **value} if isinstance(value, dict) else value
    path = write_recipe(tmp_path / "bad.yaml", recipe)
    with pytest.raises(ConfigError) as caught:
        load_train_config(path)
    assert caught.value.key == key
    assert str(path) in str(caught.value) and key in str(caught.value)


def test_a_recipe_without_data_root_names_data_root() -> None:
    with pytest.raises(ConfigError) as caught:
        train_config_from_dict({"data": {"validation": ["p"]}})
    assert caught.value.key == "data.root"


def test_validation_without_validation_series_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        train_config_from_dict({"data": {"root": "x"}})
    assert caught.value.key == "data.validation"


def test_the_paper_recipe_is_the_default() -> None:
    config = load_train_config(REPO / "configs" / "train_paper_ct.yaml")
    assert (config.crop_size, config.batch_size, config.iterations) == (128, 16, 40_000)
    assert (config.optim.lr, config.optim.weight_decay, config.optim.lr_min) == (3e-4, 1e-4, 1e-6)
    assert config.optim.grad_clip_norm == 0.01 and config.optim.loss == "l1"
    assert config.augment == AugmentConfig(dihedral=True, mixup_prob=0.5, mixup_beta=1.2)
    assert config.model.feature_aug_level == 0.025 and not config.model.train_encoder
    assert config.noise.kind == "gaussian" and config.noise.sigma == pytest.approx(5 / 255)
    assert config.encoder_weights == "openai"
    assert config.data.layout == "mayo2016" and "L506" in config.data.exclude
    assert config == train_config_from_dict(config.to_dict())


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("train_*.yaml")))
def test_every_shipped_training_recipe_loads(name: str) -> None:
    load_train_config(REPO / "configs" / name)


def test_a_misspelt_validation_patient_is_refused(data_root: Path, tmp_path: Path) -> None:
    config = train_config_from_dict(tiny_recipe(data_root, **{"data.validation": ["patient_c"]}))
    with pytest.raises(ConfigError) as caught:
        train(config, tmp_path / "run", progress=False)
    assert caught.value.key == "data.validation" and "patient_c" in str(caught.value)


def test_a_mayo_tree_is_split_by_patient_folder(build_series, tmp_path: Path) -> None:
    for patient in ("L067", "L096", "L506"):
        build_series([0.0], name=f"mayo/{patient}/full_1mm", source="CT_small.dcm")
        build_series([0.0], name=f"mayo/{patient}/quarter_1mm", source="CT_small.dcm")
    config = DataConfig(root=str(tmp_path / "mayo"), layout="mayo2016", validation=("L096",), exclude=("L506",))
    split = split_series(config)
    assert [s.name for s in split.train] == ["L067"] and [s.name for s in split.validation] == ["L096"]
    assert all("full_1mm" in str(s.ref.paths[0]) for s in split.train + split.validation)


# ---------------------------------------------------------------- augmentation


def test_dihedral_gives_the_eight_symmetries_of_a_square() -> None:
    image = torch.arange(16.0).reshape(4, 4)
    variants = {tuple(dihedral(image, turns, flip).flatten().tolist()) for turns in range(4) for flip in (False, True)}
    assert len(variants) == 8


def test_mixup_mixes_input_and_target_with_the_same_weight_and_pairing() -> None:
    noisy, clean = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    always = AugmentConfig(mixup_prob=1.0)
    mixed_noisy, mixed_clean = mixup(noisy, clean, always, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    rng.uniform()
    lam, order = rng.beta(1.2, 1.2), rng.permutation(4)
    assert torch.allclose(mixed_noisy, lam * noisy + (1 - lam) * noisy[order])
    assert torch.allclose(mixed_clean, lam * clean + (1 - lam) * clean[order])
    never = AugmentConfig(mixup_prob=0.0)
    assert mixup(noisy, clean, never, np.random.default_rng(0))[0] is noisy


# ---------------------------------------------------------------- noise mixtures


def test_a_mixed_noise_draws_clean_gaussian_and_physics_crops_in_the_stated_shares() -> None:
    noise = NoiseConfig(kind="mixed", gaussian_share=0.3, clean_share=0.2, sigma_range=(0.01, 0.05))
    clean = torch.full((16, 16), 0.25)
    physics = np.full((16, 16), 500.0, dtype=np.float32)  # stands for a simulated crop: far from clean
    rng = np.random.default_rng(0)
    kinds = []
    for _ in range(2000):
        noisy = noisy_unit(clean, physics, noise, rng)
        if torch.equal(noisy, clean):
            kinds.append("clean")
        elif torch.allclose(noisy, hu_to_unit(torch.from_numpy(physics))):
            kinds.append("physics")
        else:
            assert 0.005 < float((noisy - clean).std()) < 0.06  # sigma drawn from sigma_range
            kinds.append("gaussian")
    shares = {kind: kinds.count(kind) / len(kinds) for kind in ("clean", "gaussian", "physics")}
    assert shares == pytest.approx({"clean": 0.2, "gaussian": 0.3, "physics": 0.5}, abs=0.03)
    assert NoiseConfig(kind="mixed", gaussian_share=0.5, clean_share=0.5).uses_physics is False


def test_log_uniform_doses_give_each_factor_of_dose_the_same_weight() -> None:
    noise = NoiseConfig(kind="physics", dose_range=(0.04, 1.0), dose_sampling="log-uniform")
    rng = np.random.default_rng(1)
    doses = np.array([draw_dose(noise, rng) for _ in range(4000)])
    assert doses.min() >= 0.04 and doses.max() <= 1.0
    assert np.mean(doses < 0.2) == pytest.approx(np.log(0.2 / 0.04) / np.log(1.0 / 0.04), abs=0.03)


def test_a_bf16_training_step_runs_and_keeps_fp32_weights(data_root: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(data_root, iterations=2, checkpoint_every=2, precision="bf16")
    result = train(train_config_from_dict(recipe), tmp_path / "run", progress=False)
    losses = [r["loss"] for r in log_events(tmp_path / "run", "train")]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert all(t.dtype == torch.float32 for t in load_checkpoint(result.model_dir).state_dict().values() if t.is_floating_point())


# ---------------------------------------------------------------- training


def test_training_lowers_the_loss_and_writes_a_usable_model(data_root: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(
        data_root, iterations=40, checkpoint_every=40, batch_size=4,
        validation={"every": 20, "crop": 64, "levels": [{"kind": "gaussian"}, {"kind": "none"}]},
    )
    run = tmp_path / "run"
    result = train(train_config_from_dict(recipe), run, progress=False)
    losses = [r["loss"] for r in log_events(run, "train")]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    validations = log_events(run, "validation")
    assert [v["iteration"] for v in validations] == [0, 20, 40]
    assert set(validations[-1]["metrics"]) == {"gaussian 5/255", "clean"}
    assert all(set(level) == {"redcnn", "clip-paper"} for level in validations[-1]["metrics"].values())
    scores = [v["selection_score"] for v in validations]
    assert scores[-1] == pytest.approx(np.mean([m["redcnn"]["psnr"] for m in validations[-1]["metrics"].values()]))
    best = json.loads((run / BEST_MODEL_DIR / "config.json").read_text())["training_summary"]
    assert best["selection_score"] == max(scores[1:])
    assert best["iterations"] == [v["iteration"] for v in validations][scores.index(max(scores[1:]))]
    assert result.model_dir == run / MODEL_DIR
    model = load_checkpoint(result.model_dir)
    summary = json.loads((run / MODEL_DIR / "config.json").read_text())["training_summary"]
    assert summary["encoder_weights"]["kind"] == "random" and summary["iterations"] == 40
    assert summary["data"]["validation_series"] and summary["data"]["train_slices"] == 2
    assert model(torch.rand(1, 1, 40, 40)).shape == (1, 1, 40, 40)


def test_resume_continues_exactly_like_an_uninterrupted_run(data_root: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(data_root, noise={"kind": "physics", "dose_range": [0.2, 0.4], "realisations": 2, "n_views": 90})
    config = train_config_from_dict(recipe)
    run = tmp_path / "run"
    train(config, run, progress=False)
    uninterrupted = load_checkpoint(run / MODEL_DIR).state_dict()
    final_state = read_state(checkpoint_dir(run / CHECKPOINTS, 6))
    final_optimizer = (checkpoint_dir(run / CHECKPOINTS, 6) / OPTIMIZER_FILE).read_bytes()
    # Interrupt after iteration 3: remove everything written later.
    shutil.rmtree(checkpoint_dir(run / CHECKPOINTS, 6))
    shutil.rmtree(run / MODEL_DIR)

    with pytest.raises(OutputError):
        train(config, run, progress=False)
    train(config, run, resume=True, progress=False)

    resumed = load_checkpoint(run / MODEL_DIR).state_dict()
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    resumed_state = read_state(checkpoint_dir(run / CHECKPOINTS, 6))
    assert resumed_state["scheduler"] == final_state["scheduler"]
    assert resumed_state["optimizer"] == final_state["optimizer"]
    assert (checkpoint_dir(run / CHECKPOINTS, 6) / OPTIMIZER_FILE).read_bytes() == final_optimizer
    starts = log_events(run, "start")
    assert [(s["iteration"], s["resumed"]) for s in starts] == [(0, False), (3, True)]

    changed = train_config_from_dict({**recipe, "optim": {"lr": 5e-4}})
    shutil.rmtree(checkpoint_dir(run / CHECKPOINTS, 6))
    with pytest.raises(ConfigError) as caught:
        train(changed, run, resume=True, progress=False)
    assert caught.value.key == "optim.lr"


def test_ctdenoise_train_command_runs_a_recipe(data_root: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_recipe(data_root, iterations=2, checkpoint_every=2))
    assert cli_main(["train", "--config", str(recipe), "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    assert (tmp_path / "run" / MODEL_DIR / "model.safetensors").is_file()
    bad = write_recipe(tmp_path / "bad.yaml", {**tiny_recipe(data_root), "learning_rate": 1})
    assert cli_main(["train", "--config", str(bad)]) == 2


@pytest.mark.slow  # ~20 s (two processes / a kernel start): CI runs it in its slow step
def test_two_torchrun_processes_train_together_on_cpu(data_root: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "ddp.yaml", tiny_recipe(data_root, iterations=4, checkpoint_every=2))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ctdenoise", "train", "--config", str(recipe), "--output", str(run), "--no-progress"]
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-3000:]
    start = log_events(run, "start")
    assert len(start) == 1 and start[0]["world_size"] == 2  # only rank 0 writes
    assert [r["iteration"] for r in log_events(run, "train")] == [1, 2, 3, 4]
    assert load_checkpoint(run / MODEL_DIR) is not None


def test_init_model_starts_from_that_models_weights_and_keeps_its_encoder_record(data_root: Path, tmp_path: Path) -> None:
    first = train(train_config_from_dict(tiny_recipe(data_root, iterations=3)), tmp_path / "first", progress=False)
    start = load_checkpoint(first.model_dir).state_dict()
    recipe = tiny_recipe(data_root, iterations=1, init_model=str(first.model_dir), optim={"lr": 1.0e-9, "lr_min": 0.0})
    tuned = load_checkpoint(train(train_config_from_dict(recipe), tmp_path / "tuned", progress=False).model_dir)
    fresh_run = tiny_recipe(data_root, iterations=1, optim={"lr": 1.0e-9, "lr_min": 0.0})
    fresh = load_checkpoint(train(train_config_from_dict(fresh_run), tmp_path / "fresh", progress=False).model_dir)
    weights = [k for k, v in start.items() if v.is_floating_point() and "running" not in k]
    assert max((tuned.state_dict()[k] - start[k]).abs().max().item() for k in weights) < 1e-6
    assert max((fresh.state_dict()[k] - start[k]).abs().max().item() for k in weights) > 1e-3  # same seed, 3 steps apart
    record = json.loads((tmp_path / "tuned" / MODEL_DIR / "config.json").read_text())["training_summary"]["encoder_weights"]
    assert record["kind"] == "init_model" and record["init_model_encoder_weights"]["kind"] == "random"
    sha = json.loads((first.model_dir / "config.json").read_text())["tensors"]["sha256"]
    assert record["init_model_tensors_sha256"] == sha


def test_init_model_with_another_architecture_is_refused(data_root: Path, tmp_path: Path) -> None:
    first = train(train_config_from_dict(tiny_recipe(data_root, iterations=1)), tmp_path / "first", progress=False)
    recipe = tiny_recipe(data_root, init_model=str(first.model_dir), model={"feature_aug_level": 0.0})
    with pytest.raises(ConfigError, match="init_model"):
        train(train_config_from_dict(recipe), tmp_path / "tuned", progress=False)


def test_gradient_loss_charges_a_flattened_edge_that_plain_l1_barely_sees():
    from ctdenoise.training.config import OptimConfig
    from ctdenoise.training.losses import training_loss

    target = torch.zeros(1, 1, 16, 16)
    target[..., ::2, :] = 0.1  # fine stripes: texture
    flat = torch.full_like(target, 0.05)  # the same mean, texture gone
    plain = training_loss(flat, target, OptimConfig(loss="l1"))
    with_gradient = training_loss(flat, target, OptimConfig(loss="l1+gradient", gradient_weight=1.0))
    assert with_gradient > 2.5 * plain
    assert training_loss(target, target, OptimConfig(loss="l1+gradient")) == 0


def test_noise_kernels_and_bowties_are_validated_and_named_in_the_label():
    from ctdenoise.training.config import NoiseConfig

    noise = NoiseConfig(kind="physics", kernels=("smooth", "sharp"), bowties=("none", "body"))
    assert noise.label == "dose 0.25 smooth/sharp bowtie none/body"
    assert NoiseConfig(kind="physics").label == "dose 0.25"
    with pytest.raises(ConfigError, match="kernels"):
        NoiseConfig(kind="physics", kernels=("b30f",))
    with pytest.raises(ConfigError, match="bowties"):
        NoiseConfig(kind="physics", bowties=("wide",))
    assert NoiseConfig(kind="physics", kernels=("smooth",), kernel_cutoff_scale=(0.45, 0.45)).label == "dose 0.25 smooth cutoff x0.45"
    with pytest.raises(ConfigError, match="kernel_cutoff_scale"):
        NoiseConfig(kind="physics", kernel_cutoff_scale=(0.5, 0.2))


def test_a_kernel_cutoff_scale_draws_coarser_grain_and_none_draws_nothing():
    from ctdenoise.recon_kernels import KERNELS
    from ctdenoise.training.pairs import draw_kernel

    plain = NoiseConfig(kind="physics", kernels=("standard",))
    rng = np.random.default_rng(3)
    assert draw_kernel(plain, 0.8, rng) is KERNELS["standard"]
    assert rng.uniform() == np.random.default_rng(3).uniform()
    scaled = NoiseConfig(kind="physics", kernels=("standard",), kernel_cutoff_scale=(0.4, 0.9))
    cutoffs = [draw_kernel(scaled, 0.8, np.random.default_rng(seed)).cutoff(0.8) for seed in range(20)]
    assert all(0.4 - 1e-9 <= c <= 0.9 + 1e-9 for c in cutoffs) and max(cutoffs) - min(cutoffs) > 0.2
