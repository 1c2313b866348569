"""Find, read, check and fingerprint CLIP image-tower weights: one place for every source.

Resolution order of :func:`resolve_clip_weights`: an explicit local file; the user cache folder
(``$CTDENOISE_CLIP_CACHE`` or ``~/.cache/ctdenoise/clip``) holding ``<name>.safetensors`` or
``<name>.pt``; open_clip's download of OpenAI's ``<name>.pt`` into that cache folder.

Accepted files: OpenAI's TorchScript archive (``RN50.pt``, read with ``torch.jit.load``), or a state
dict of a whole CLIP model (``visual.*`` keys, text keys ignored, optional ``state_dict`` wrapper and
``module.`` prefix) or of the image tower alone (no prefix), as ``.safetensors`` or as a
``torch.save`` file (``.pt``/``.bin``, read with ``torch.load(weights_only=True)``: tensors only).

Checking is strict where the public CLIPDenoising code is lenient (it skips unmatched keys and
silently leaves a random encoder): every tensor of stem + layer1..layer3 must be present with its
shape; ``layer4.*`` and ``attnpool.*`` are accepted and dropped (unused); BatchNorm
``num_batches_tracked`` counters are ignored; any other key is refused.

Fingerprint (``sha256``): over the used tensors only, so the same CLIP weights give the same value
whatever the file format, precision or extra keys: for each key in sorted order, the UTF-8 bytes of
``"<key>|<d0>,<d1>,...\\n"`` followed by the tensor's values as contiguous little-endian float32.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from safetensors.torch import load_file
from torch import Tensor

from ctdenoise.errors import WeightsError
from ctdenoise.model.config import EncoderSpec, encoder_spec
from ctdenoise.model.encoder import CLIPResNetEncoder

CACHE_ENV_VAR = "CTDENOISE_CLIP_CACHE"
_DROPPED_PREFIXES = ("layer4.", "attnpool.")
_MAX_LISTED_KEYS = 8


@dataclass(frozen=True)
class ResolvedWeights:
    """CLIP encoder weights ready to load: the used image-tower tensors (float32, keys without
    ``visual.``), their canonical sha256 (see module docstring), where they came from, and the encoder name."""

    state_dict: dict[str, Tensor]
    sha256: str
    origin: str
    encoder_name: str = "RN50"


def default_cache_dir() -> Path:
    """The user's CLIP weight cache: ``$CTDENOISE_CLIP_CACHE`` if set, else ``~/.cache/ctdenoise/clip``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ctdenoise" / "clip"


def encoder_weights_sha256(state_dict: Mapping[str, Tensor]) -> str:
    """Canonical sha256 of encoder tensors (format-, precision- and order-independent; module docstring)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}|{','.join(str(d) for d in tensor.shape)}\n".encode())
        digest.update(tensor.numpy().astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def expected_encoder_shapes(spec: EncoderSpec) -> dict[str, torch.Size]:
    """Every tensor name and shape the truncated encoder of ``spec`` needs (built on the meta device)."""
    with torch.device("meta"):
        return CLIPResNetEncoder(spec).weight_shapes()


def select_encoder_tensors(raw: Mapping[str, Tensor], encoder_name: str, source: str) -> dict[str, Tensor]:
    """Check a visual-tower state dict strictly and return the used tensors as float32.

    Raises WeightsError naming ``source`` and the missing, unexpected or wrongly shaped keys.
    """
    expected = expected_encoder_shapes(encoder_spec(encoder_name))
    missing = sorted(set(expected) - set(raw))
    unexpected = sorted(
        k for k in raw if k not in expected and not k.startswith(_DROPPED_PREFIXES) and not k.endswith("num_batches_tracked")
    )
    wrong_shape = sorted(
        f"{k} {tuple(raw[k].shape)} (expected {tuple(expected[k])})"
        for k in expected
        if k in raw and raw[k].shape != expected[k]
    )
    problems = [
        f"{label}: {_list_keys(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape))
        if keys
    ]
    if problems:
        raise WeightsError(
            f"{source}: not the image tower of CLIP {encoder_name}; " + "; ".join(problems)
            + ". Refusing to continue with a partly random encoder."
        )
    not_float = sorted(k for k in expected if not raw[k].is_floating_point())
    if not_float:
        raise WeightsError(f"{source}: tensors are not floating point: {_list_keys(not_float)}")
    return {k: raw[k].detach().to("cpu", torch.float32).contiguous() for k in sorted(expected)}


def read_weight_file(path: Path) -> dict[str, Tensor]:
    """Read a CLIP weight file (TorchScript archive, safetensors, or tensors-only torch.save) and return
    its image-tower tensors with normalised key names (no ``module.``/``visual.`` prefix)."""
    if not path.is_file():
        raise WeightsError(f"{path}: CLIP weight file not found (or not a file)")
    try:
        if path.suffix == ".safetensors":
            raw = load_file(str(path))
        elif _is_torchscript_archive(path):
            with warnings.catch_warnings():  # torch >= 2.9 flags torch.jit as deprecated; OpenAI ships TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                raw = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # every reader failure becomes one clear WeightsError
        raise WeightsError(
            f"{path}: cannot read as CLIP weights (OpenAI TorchScript .pt, .safetensors, or a tensors-only "
            f"state dict): {type(exc).__name__}: {exc}"
        ) from exc
    return _visual_tower(raw, path)


def resolve_clip_weights(
    encoder_name: str = "RN50",
    weights: str | Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
) -> ResolvedWeights:
    """Find the CLIP weights of ``encoder_name`` and return the checked encoder tensors.

    Order: ``weights`` (a local file; if given, it is the only source tried), then the cache folder
    (``cache_dir`` or :func:`default_cache_dir`) holding ``<name>.safetensors`` or ``<name>.pt``, then
    (if ``allow_download``) open_clip's download of OpenAI's ``<name>.pt`` into that folder, checked
    against the sha256 in OpenAI's URL. Raises WeightsError when the weights are missing, unreadable or
    do not fit the architecture; without network, the message says how to supply the file.
    """
    spec = encoder_spec(encoder_name)
    if weights is not None:
        path = Path(weights).expanduser()
        return _resolved(read_weight_file(path), spec.name, f"local file {path.resolve()}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    for candidate in (cache / f"{spec.name}.safetensors", cache / f"{spec.name}.pt"):
        if candidate.is_file():
            return _resolved(read_weight_file(candidate), spec.name, f"user cache {candidate.resolve()}")
    if not allow_download:
        raise WeightsError(_how_to_supply(spec.name, cache, "not in the cache and downloading is disabled"))
    url = open_clip.get_pretrained_url(spec.name, "openai")
    try:
        downloaded = open_clip.download_pretrained(
            open_clip.get_pretrained_cfg(spec.name, "openai"), prefer_hf_hub=False, cache_dir=str(cache)
        )
    except Exception as exc:  # no network, proxy, disk or checksum: all mean "supply it yourself"
        raise WeightsError(
            _how_to_supply(spec.name, cache, f"download failed ({type(exc).__name__}: {exc})")
        ) from exc
    return _resolved(read_weight_file(Path(downloaded)), spec.name, f"open_clip download {url}")


def _resolved(raw: Mapping[str, Tensor], encoder_name: str, origin: str) -> ResolvedWeights:
    tensors = select_encoder_tensors(raw, encoder_name, origin)
    return ResolvedWeights(tensors, encoder_weights_sha256(tensors), origin, encoder_name)


def _visual_tower(raw: object, path: Path) -> dict[str, Tensor]:
    """Unwrap ``{"state_dict": ...}``, strip ``module.``, keep ``visual.*`` (without prefix) if present."""
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise WeightsError(f"{path}: not a state dict of tensors (got {type(raw).__name__})")
    tensors = {k.removeprefix("module."): v for k, v in raw.items()}
    if any(k.startswith("visual.") for k in tensors):
        return {k.removeprefix("visual."): v for k, v in tensors.items() if k.startswith("visual.")}
    return tensors


def _is_torchscript_archive(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder (a torch.save zip has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _how_to_supply(encoder_name: str, cache: Path, reason: str) -> str:
    url = open_clip.get_pretrained_url(encoder_name, "openai")
    return (
        f"CLIP {encoder_name} weights unavailable: {reason}. Supply them in one of these ways: "
        f"(1) pass the file explicitly (weights=PATH / --clip-weights FILE on the command line); "
        f"(2) put it in the cache folder {cache} as {encoder_name}.pt or {encoder_name}.safetensors "
        f"(or set {CACHE_ENV_VAR} to a folder holding it); "
        f"(3) on a machine with internet run `curl -L -o {encoder_name}.pt {url}` "
        f"(its sha256 begins with the hex folder name in that URL) and copy the file here."
    )


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f" ... and {len(keys) - _MAX_LISTED_KEYS} more" if len(keys) > _MAX_LISTED_KEYS else "")
