"""Where models come from: the model shipped inside the package, or a checkpoint folder a user names.

A model is a folder with ``config.json`` + ``model.safetensors`` (see :mod:`ctdenoise.model`) and,
for shipped models, a ``MODEL_CARD.md``. Shipped models live in ``ctdenoise/models/<name>/``;
``default`` is the one ``ctdenoise denoise`` uses when no ``--model`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path

from ctdenoise.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL_NAME = "default"
MODEL_CARD_FILE = "MODEL_CARD.md"

NO_MODEL_HELP = (
    "train one with `ctdenoise train --config configs/<recipe>.yaml` (see README, 'Training') "
    "and pass its output folder with --model PATH"
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


def load_model(
    spec: str | Path | None = None, *, clip_weights: str | Path | None = None, map_location: str = "cpu"
):
    """Load the model named by ``spec`` (see :func:`resolve_model_dir`) in eval mode.

    ``clip_weights`` is a CLIP weight file for checkpoints that reference their encoder by sha256
    instead of carrying it (else the user cache / download is tried). Loading never unpickles:
    checkpoints are safetensors plus JSON, verified by hash.
    """
    from ctdenoise.model import load_checkpoint

    model = load_checkpoint(resolve_model_dir(spec), encoder_weights=clip_weights, map_location=map_location)
    return model.eval()


def model_card(spec: str | Path | None = None) -> str | None:
    """The Markdown model card of the model named by ``spec``, or None when it has none."""
    card = resolve_model_dir(spec) / MODEL_CARD_FILE
    return card.read_text(encoding="utf-8") if card.is_file() else None


def model_label(spec: str | Path | None = None) -> str:
    """A short provenance label for outputs: the model's name and the first 12 hex digits of the sha256
    of its ``model.safetensors`` as recorded in its ``config.json``, e.g. ``default@0e811f2a5ab0``."""
    directory = resolve_model_dir(spec)
    name = DEFAULT_MODEL_NAME if spec is None else Path(str(spec)).name
    try:
        digest = json.loads((directory / "config.json").read_text(encoding="utf-8"))["tensors"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{directory / 'config.json'}: cannot read the model's recorded sha256 ({error})") from None
    return f"{name}@{str(digest)[:12]}"
