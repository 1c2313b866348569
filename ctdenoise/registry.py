"""Where models come from: the model shipped inside the package, or a checkpoint folder a user names.

A model is a folder with ``config.json`` + ``model.safetensors`` (see :mod:`ctdenoise.model`) and,
for shipped models, a ``MODEL_CARD.md``. Shipped models live in ``ctdenoise/models/<name>/``;
``default`` is the one ``ctdenoise denoise`` uses when no ``--model`` is given.
"""

from __future__ import annotations

from pathlib import Path

from ctdenoise.errors import ModelError
from ctdenoise.model_files import check_checkpoint_files, read_small_json

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL_NAME = "default"
MODEL_CARD_FILE = "MODEL_CARD.md"

NO_MODEL_HELP = (
    "train one with `ctdenoise train --config RECIPE.yaml` (the recipe format, with an example to copy: the docs' "
    "Training page) and pass its output folder with --model PATH"
)


def available_models() -> list[str]:
    """Names of the models shipped with the package (folders holding a config.json)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model_dir(spec: str | Path | None = None) -> Path:
    """Return the checkpoint folder for ``spec``: None/"default", a shipped model name, or a path.

    Raises :class:`ModelError` saying what exists and how to get a model when nothing matches.
    """
    name = DEFAULT_MODEL_NAME if spec is None else str(spec)
    if name in available_models():
        return MODELS_DIR / name
    path = Path(name).expanduser()
    if path.exists():
        return path
    if name == DEFAULT_MODEL_NAME:
        raise ModelError(f"no default model is installed with this package; {NO_MODEL_HELP}")
    shipped = ", ".join(available_models()) or "none"
    raise ModelError(f"model {name!r} is neither a shipped model (shipped: {shipped}) nor an existing path; {NO_MODEL_HELP}")


def check_model_folder(spec: str | Path | None = None) -> Path:
    """The checkpoint folder for ``spec`` (:func:`resolve_model_dir`) once its files pass the checks that need
    neither torch nor loading (:func:`ctdenoise.model_files.check_checkpoint_files`); :class:`ModelError`
    naming the file and the problem otherwise. Fast: a command checks its model with it before anything else."""
    return check_checkpoint_files(resolve_model_dir(spec))


def load_model(
    spec: str | Path | None = None, *, clip_weights: str | Path | None = None, map_location: str = "cpu"
):
    """Load the model named by ``spec`` (see :func:`resolve_model_dir`) in eval mode.

    ``clip_weights`` is a CLIP weight file for checkpoints that reference their encoder by sha256
    instead of carrying it (else the user cache / download is tried). Loading never unpickles:
    checkpoints are safetensors plus JSON, verified by hash. To run it, prepare it once
    (:func:`ctdenoise.runtime.prepare.load_prepared` loads and prepares in one step, keeping the model's
    label and folder).
    """
    from ctdenoise.model import load_checkpoint

    directory = resolve_model_dir(spec)
    return load_checkpoint(directory, encoder_weights=clip_weights, map_location=map_location).eval()


def model_card(spec: str | Path | None = None) -> str | None:
    """The Markdown model card of the model named by ``spec``, or None when it has none."""
    card = resolve_model_dir(spec) / MODEL_CARD_FILE
    return card.read_text(encoding="utf-8") if card.is_file() else None


def model_label(spec: str | Path | None = None) -> str:
    """A short provenance label for outputs: the model's name and the first 12 hex digits of the sha256
    of its ``model.safetensors`` as recorded in its ``config.json``, e.g. ``default@0e811f2a5ab0``."""
    directory = resolve_model_dir(spec)
    name = DEFAULT_MODEL_NAME if spec is None else Path(str(spec)).name
    return f"{name}@{recorded_tensors_sha256(directory)[:12]}"


def recorded_tensors_sha256(directory: Path) -> str:
    """The sha256 of ``model.safetensors`` that the model folder ``directory``'s ``config.json`` records (which
    loading verifies); :class:`ModelError` naming the file when it cannot be read."""
    config = directory / "config.json"
    try:
        return str(read_small_json(config)["tensors"]["sha256"])  # CheckpointError is a ModelError
    except (OSError, KeyError, TypeError) as error:
        raise ModelError(f"{config}: cannot read the model's recorded sha256 ({error})") from None


def encoder_provenance(model: object) -> str:
    """What the model's encoder weights are, for outputs and logs; says "CLIP" only if they are CLIP's.

    A checkpoint records the sha256 and origin of the CLIP weights its encoder was loaded with
    (``config.json`` ``encoder.weights_sha256`` / ``weights_origin``, on the model as
    ``encoder_weights_sha256`` / ``encoder_weights_origin``); without them the encoder started from a
    random initialisation. Whether it was then trained comes from ``config.train_encoder``. Examples:
    ``"random init, trained"``, ``"CLIP RN50 weights, frozen"``, ``"CLIP RN50 init, trained"``; a model
    that records neither (not a CLIPDenoiser) gives ``"not recorded"``.
    """
    config = getattr(model, "config", None)
    trained = getattr(config, "train_encoder", None)
    if trained is None or not hasattr(model, "encoder_weights_sha256"):
        return "not recorded"
    if getattr(model, "encoder_weights_sha256", None) is None:
        return "random init, trained" if trained else "random init, frozen"
    name = getattr(config, "encoder_name", "")
    return f"CLIP {name} init, trained" if trained else f"CLIP {name} weights, frozen"


def model_description(model: object, label: str) -> str:
    """The model as outputs name it (DerivationDescription, logs): architecture, ``label``
    (:func:`model_label`) and :func:`encoder_provenance`, e.g.
    ``"CLIPDenoising-architecture model default@0e811f2a5ab0 (encoder: random init, trained)"``; another
    architecture (no recorded encoder) is ``"model LABEL"``. A 2.5-D model says so: ``"CLIPDenoising-architecture
    2.5-D model (3 slices in) LABEL (...)"`` (a derived image then depends on its neighbouring slices too)."""
    if encoder_provenance(model) == "not recorded":
        return f"model {label}"
    from ctdenoise.model.context import context_slices_of  # torch; the model is loaded already

    context = context_slices_of(model)  # type: ignore[arg-type]
    kind = "model" if context == 1 else f"2.5-D model ({context} slices in)"
    return f"CLIPDenoising-architecture {kind} {label} (encoder: {encoder_provenance(model)})"


def derived_series_texts(model: object, label: str, strength: float) -> tuple[str, str]:
    """The provenance texts of a derived series, the same for ``ctdenoise denoise`` and ``ctdenoise serve``:
    (SeriesDescription suffix ``"denoised LABEL s=S"``, DerivationDescription ``"ctdenoise VERSION``
    :func:`model_description` ``, strength S"``)."""
    from ctdenoise import __version__

    return (f"denoised {label} s={strength:g}",
            f"ctdenoise {__version__} {model_description(model, label)}, strength {strength:g}")
