"""The training recipe as typed, validated data: :class:`TrainConfig`, read from YAML by :func:`load_train_config`.

Every section is a frozen dataclass. Loading is strict: an unknown key, a value of the wrong type or
out of range raises :class:`~ctdenoise.errors.ConfigError` whose ``key`` is the dotted path of the
offending entry (e.g. ``optim.lr``) and whose message names the YAML file. Defaults are the
CLIPDenoising paper's CT recipe (Cheng et al., CVPR 2024; docs/training.md), so ``configs/train_paper_ct.yaml`` only has to
name the data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ctdenoise.config_files import Builders, build_dataclass, load_dataclass
from ctdenoise.errors import ConfigError
from ctdenoise.metrics import get_protocol
from ctdenoise.model.config import ModelConfig
from ctdenoise.recon_kernels import check_bowtie, get_kernel
from ctdenoise.simulate import DEFAULT_ELECTRONIC_NOISE_VAR, DEFAULT_I0, DEFAULT_N_VIEWS, PAPER_SIGMA

#: ``encoder_weights`` values that are not file paths.
OPENAI_WEIGHTS = "openai"
RANDOM_WEIGHTS = "random"


def _per_255(sigma: float) -> str:
    """``sigma`` on the model scale as the paper writes it, in 255ths (``0.0196 -> '5'``)."""
    return f"{round(sigma * 255, 2):g}"


def _require(condition: bool, key: str, problem: str) -> None:
    if not condition:
        raise ConfigError(key, problem)


@dataclass(frozen=True)
class DataConfig:
    """Where the normal-dose training slices come from and how they are split.

    ``root``: a folder (tree) of DICOM series and/or NIfTI/NRRD/MHA volumes, or a Mayo-2016 tree
    (``layout: mayo2016``: patient folders ``L067`` ... holding ``mayo_folder``, e.g. ``full_1mm``).
    Relative paths are taken from the current working directory. ``split_by``: ``patient`` (the
    first folder level under ``root``, the Mayo patient id) or ``series`` (the series key that
    :func:`ctdenoise.io.find_series` reports). ``validation``: names of that level used only for
    validation; ``exclude``: names never read at all (a held-out test set). Every other series trains.
    """

    root: str
    layout: Literal["folders", "mayo2016"] = "folders"
    mayo_folder: str = "full_1mm"
    split_by: Literal["patient", "series"] = "patient"
    validation: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        overlap = sorted(set(self.validation) & set(self.exclude))
        if overlap:
            raise ConfigError("data.validation", f"{overlap} also listed in data.exclude")


@dataclass(frozen=True)
class NoiseConfig:
    """How a noisy input is made from a normal-dose slice.

    ``gaussian``: the paper's i.i.d. noise of std ``sigma`` on the (HU+1024)/4096 scale, drawn afresh
    for every crop (with ``sigma_range`` set, the std itself is drawn uniformly from it per crop).
    ``physics``: :func:`ctdenoise.simulate.simulate_low_dose` with a dose fraction drawn from ``dose_range``
    (``dose_sampling``: ``uniform``, or ``log-uniform`` for equal weight per factor of dose); simulating a
    whole slice is costly, so ``realisations`` noisy copies per training slice are made once at start-up
    and crops are taken from them. ``none``: the input is the clean slice itself (clean-in/clean-out).
    ``mixed``: each crop is clean with probability ``clean_share``, Gaussian with probability
    ``gaussian_share`` and physics low dose otherwise, each as described above. Each physics realisation
    is reconstructed with a kernel drawn from ``kernels`` and a bowtie drawn from ``bowties`` (names of
    :data:`ctdenoise.simulate.KERNELS` and :data:`ctdenoise.simulate.BOWTIES` or ``none``), so one recipe can
    span the noise textures of many scanners; with one name each nothing is drawn. ``kernel_cutoff_scale``
    ``[low, high]`` multiplies the drawn kernel's cutoff (on the slice's grid) by a factor drawn log-uniformly
    from it (:meth:`ctdenoise.recon_kernels.ReconKernel.scaled`): below 1 the grain is coarser in pixels, as the
    same kernel gives on a finer pixel grid; unset (the default) draws nothing.
    """

    kind: Literal["gaussian", "physics", "mixed", "none"] = "gaussian"
    sigma: float = PAPER_SIGMA
    sigma_range: tuple[float, float] | None = None
    dose_range: tuple[float, float] = (0.25, 0.25)
    dose_sampling: Literal["uniform", "log-uniform"] = "uniform"
    i0: float = DEFAULT_I0
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR
    n_views: int = DEFAULT_N_VIEWS
    realisations: int = 8
    gaussian_share: float = 0.0
    clean_share: float = 0.0
    kernels: tuple[str, ...] = ("hann",)
    bowties: tuple[str, ...] = ("none",)
    kernel_cutoff_scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _require(self.sigma > 0, "sigma", "must be > 0")
        if self.sigma_range is not None:
            s_low, s_high = self.sigma_range
            _require(0 < s_low <= s_high, "sigma_range", f"must be [low, high] with 0 < low <= high, got {list(self.sigma_range)}")
        low, high = self.dose_range
        _require(0 < low <= high <= 1, "dose_range", f"must be [low, high] with 0 < low <= high <= 1, got {list(self.dose_range)}")
        _require(self.i0 > 0, "i0", "must be > 0")
        _require(self.electronic_noise_var >= 0, "electronic_noise_var", "must be >= 0")
        _require(self.n_views >= 8, "n_views", "must be >= 8")
        _require(self.realisations >= 1, "realisations", "must be >= 1")
        for key in ("gaussian_share", "clean_share"):
            _require(0 <= getattr(self, key) <= 1, key, "must be in [0, 1]")
        _require(self.gaussian_share + self.clean_share <= 1, "clean_share", "gaussian_share + clean_share must be <= 1")
        if self.kind != "mixed":
            _require(self.gaussian_share == 0 and self.clean_share == 0, "kind",
                     "gaussian_share / clean_share apply to kind: mixed only")
        if self.kernel_cutoff_scale is not None:
            c_low, c_high = self.kernel_cutoff_scale
            _require(0 < c_low <= c_high <= 4, "kernel_cutoff_scale",
                     f"must be [low, high] with 0 < low <= high <= 4, got {list(self.kernel_cutoff_scale)}")
        _require(len(self.kernels) >= 1, "kernels", "must list at least one kernel")
        _require(len(self.bowties) >= 1, "bowties", "must list at least one bowtie (or none)")
        for key, names, check in (("kernels", self.kernels, get_kernel), ("bowties", self.bowties, check_bowtie)):
            for name in names:
                try:
                    check(name)
                except ConfigError as exc:
                    raise ConfigError(key, exc.problem) from None

    @property
    def uses_physics(self) -> bool:
        """Whether low-dose realisations have to be simulated for this noise."""
        return self.kind == "physics" or (self.kind == "mixed" and self.gaussian_share + self.clean_share < 1)

    @property
    def label(self) -> str:
        """A short name of this noise for logs and tables, e.g. ``dose 0.25``, ``gaussian 5/255``, ``clean``."""
        if self.kind == "none":
            return "clean"
        if self.kind == "gaussian":
            if self.sigma_range is not None:
                return f"gaussian {_per_255(self.sigma_range[0])}-{_per_255(self.sigma_range[1])}/255"
            return f"gaussian {_per_255(self.sigma)}/255"
        low, high = self.dose_range
        dose = f"dose {low:g}" if low == high else f"dose {low:g}-{high:g}"
        if self.kernels != ("hann",):
            dose += f" {'/'.join(self.kernels)}"
        if self.kernel_cutoff_scale is not None:
            c_low, c_high = self.kernel_cutoff_scale
            dose += f" cutoff x{c_low:g}" if c_low == c_high else f" cutoff x{c_low:g}-{c_high:g}"
        if self.bowties != ("none",):
            dose += f" bowtie {'/'.join(self.bowties)}"
        return dose if self.kind == "physics" else f"mixed ({dose}, gaussian {self.gaussian_share:g}, clean {self.clean_share:g})"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a cosine learning-rate decay from ``lr`` to ``lr_min`` over all iterations.

    ``loss``: ``l1`` (the paper's), or ``l1+gradient``: L1 plus ``gradient_weight`` times the L1 distance of the
    horizontal and vertical finite differences of output and target, a term that penalises flattened edges
    and texture which plain L1 lets pass (the gradient-difference loss of Mathieu et al. 2016).
    """

    lr: float = 3e-4
    lr_min: float = 1e-6
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip_norm: float = 0.01
    loss: Literal["l1", "l1+gradient"] = "l1"
    gradient_weight: float = 1.0

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", "must be > 0")
        _require(0 <= self.lr_min <= self.lr, "lr_min", "must be in [0, lr]")
        _require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _require(all(0 <= b < 1 for b in self.betas), "betas", "must be two numbers in [0, 1)")
        _require(self.grad_clip_norm > 0, "grad_clip_norm", "must be > 0")
        _require(self.gradient_weight >= 0, "gradient_weight", "must be >= 0")


@dataclass(frozen=True)
class AugmentConfig:
    """Batch augmentation: the 8 flips/rotations of a square, and mixup of pairs on a share of the batches."""

    dihedral: bool = True
    mixup_prob: float = 0.5
    mixup_beta: float = 1.2

    def __post_init__(self) -> None:
        _require(0 <= self.mixup_prob <= 1, "mixup_prob", "must be in [0, 1]")
        _require(self.mixup_beta > 0, "mixup_beta", "must be > 0")


@dataclass(frozen=True)
class ValidationConfig:
    """Validation every ``every`` iterations (0: never) on the validation slices, with fixed noise.

    The noisy validation inputs are made once for each of ``levels`` (default: physics-simulated quarter
    dose) with seed ``seed``. ``crop``: centre-crop validation slices to this size (None: whole slices);
    ``max_slices``: use at most this many validation slices (evenly spaced). Metrics: PSNR/SSIM/RMSE under
    each of ``protocols`` (see :mod:`ctdenoise.metrics`), per level. The selection score, fixed
    before any run, is the ``psnr`` of the first protocol averaged over all levels; the checkpoint with the
    best score is kept as the run's ``best_model``.
    """

    every: int = 1000
    protocols: tuple[str, ...] = ("redcnn", "clip-paper")
    levels: tuple[NoiseConfig, ...] = (NoiseConfig(kind="physics", dose_range=(0.25, 0.25), realisations=1),)
    crop: int | None = None
    max_slices: int = 16
    seed: int = 1234

    def __post_init__(self) -> None:
        _require(self.every >= 0, "every", "must be >= 0 (0 disables validation)")
        _require(self.max_slices >= 1, "max_slices", "must be >= 1")
        _require(self.crop is None or self.crop >= 32, "crop", "must be >= 32 or null")
        _require(len(self.levels) >= 1, "levels", "must list at least one noise level")
        labels = [level.label for level in self.levels]
        _require(len(set(labels)) == len(labels), "levels", f"lists a noise level twice: {labels}")
        _require(all(level.kind != "mixed" for level in self.levels), "levels", "a validation level cannot be kind: mixed")
        for name in self.protocols:
            try:
                get_protocol(name)
            except ConfigError as exc:
                raise ConfigError("protocols", exc.problem) from None


@dataclass(frozen=True)
class TrainConfig:
    """A complete training run. See ``configs/train_paper_ct.yaml`` for the paper's recipe.

    ``architecture``: ``clipdenoiser`` (the paper's network, ``model`` and ``encoder_weights`` apply) or
    ``redcnn``, the supervised RED-CNN baseline (:class:`ctdenoise.model.REDCNN`) trained on the
    same pairs by the same loop; ``model`` and ``encoder_weights`` do not apply to it.
    ``encoder_weights``: ``openai`` (CLIP weights found by :func:`ctdenoise.model.resolve_clip_weights`:
    user cache, else download), a path to a CLIP weight file, or ``random`` (the encoder keeps its
    random initialisation from ``seed``; recorded as such in the checkpoint). ``init_model``: a model folder
    (safetensors + JSON, e.g. an earlier run's ``best_model`` or the shipped default) whose weights, encoder
    and decoder, start the run instead (fine-tuning); its architecture must equal ``model``, the optimizer and
    learning-rate schedule start fresh, and ``encoder_weights`` is then not used. With ``model.context_slices: 3``
    (the 2.5-D input) ``init_model`` may also be a 2-D model of otherwise equal architecture: the run then starts
    from its warm start (:func:`ctdenoise.model.context_model_from_2d`), which computes exactly what that model
    computes on the centre slice, and validation feeds each slice's neighbours. ``batch_size`` is the
    global batch: with torchrun each of N processes draws ``batch_size / N`` crops. ``precision``: ``bf16``
    runs the forward pass under bfloat16 autocast (the loss, weights and optimizer stay fp32). ``num_threads``:
    CPU threads per process (None: torch's default).
    """

    data: DataConfig
    architecture: Literal["clipdenoiser", "redcnn"] = "clipdenoiser"
    model: ModelConfig = ModelConfig()
    encoder_weights: str = OPENAI_WEIGHTS
    init_model: str | None = None
    noise: NoiseConfig = NoiseConfig()
    optim: OptimConfig = OptimConfig()
    augment: AugmentConfig = AugmentConfig()
    validation: ValidationConfig = ValidationConfig()
    iterations: int = 40_000
    batch_size: int = 16
    crop_size: int = 128
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 50
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    num_threads: int | None = None
    deterministic: bool = True

    def __post_init__(self) -> None:
        _require(self.iterations >= 1, "iterations", "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self.crop_size >= 32 and self.crop_size % 32 == 0, "crop_size", "must be a multiple of 32, >= 32")
        _require(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        _require(self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
        _require(self.log_every >= 1, "log_every", "must be >= 1")
        _require(self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1 or null")
        _require(
            self.init_model is None or self.architecture == "clipdenoiser",
            "init_model",
            "applies to the clipdenoiser architecture only",
        )
        _require(
            self.model.context_slices == 1 or self.architecture == "clipdenoiser",
            "model.context_slices",
            "the 2.5-D input applies to the clipdenoiser architecture only (RED-CNN takes one slice)",
        )
        _require(
            self.validation.every == 0 or bool(self.data.validation),
            "data.validation",
            "names no validation patient/series; list some or set validation.every: 0",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), suitable for YAML/JSON; :func:`train_config_from_dict` inverts it."""
        return _plain(dataclasses.asdict(self))


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training recipe (YAML, or TOML; :func:`ctdenoise.config_files.load_dataclass`);
    errors are ConfigError naming the key and the file."""
    return load_dataclass(TrainConfig, path, _BUILDERS)


def train_config_from_dict(raw: Any) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (as read from YAML), checking every key and type."""
    return build_dataclass(TrainConfig, raw, _BUILDERS)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build_model_config(value: Any, key: str) -> ModelConfig:
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping of settings, got {type(value).__name__}")
    try:
        return ModelConfig.from_dict(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc.key}", exc.problem) from None


_BUILDERS: Builders = {ModelConfig: _build_model_config}
