"""The methods one evaluation compares: the low-dose input, classical filters, and trained networks.

Each :class:`Method` maps a (N, rows, cols) HU stack to a denoised HU stack of the same shape and
carries a provenance record for the summary (checkpoint hashes, parameters).

* ``input``: the low-dose image itself (the floor every method must beat).
* ``nlm``: scikit-image non-local means, per slice, on the HU image clipped to [-1024, 3072] and mapped
  to [0, 1] (the model scale; a linear map of HU, so the filter acts on HU, not on a display window,
  and nothing outside a window is lost); 5x5 patches, search distance 6, fast mode, ``h = 1.2 sigma``.
  Sigma is estimated per slice by :func:`ctdenoise.noise_estimate.noise_hu_local_std_percentile`. scikit-image's wavelet estimate
  (``estimate_sigma``) is not used: CT noise after filtered back-projection is spatially correlated and
  has little energy in the finest wavelet band, and on simulated quarter-dose slices it reported a
  third of the true noise std, which left the filter almost inactive. The factor 1.2 was chosen on
  training slices (CQ500-CT-310, b2cbe507f250 of ``scripts/prepare_offline_ct.py``) at quarter dose
  and Gaussian 5/255, never on the held-out slices.
* ``bm3d``: the ``bm3d`` package (non-commercial licence; not a dependency), same scale and sigma
  estimate; available only when the package is installed.
* ``nlm-sigma`` / ``bm3d-sigma``: the same filters given the true noise level instead of the estimate
  (an oracle no real scan offers: the best these filters can do). The true level of a slice is the std
  of (noisy - reference) inside the body (:func:`true_noise_sigma_hu`); :func:`apply_method` supplies it.
* a CLIPDenoiser checkpoint (:func:`clip_model_method`) or a RED-CNN checkpoint (:func:`redcnn_method`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ctdenoise.errors import CheckpointError, ConfigError
from ctdenoise.intensity import HU_SPAN, hu_to_unit, unit_to_hu
from ctdenoise.io.hashing import sha256_file
from ctdenoise.noise_estimate import noise_hu_local_std_percentile

log = logging.getLogger("ctdenoise.evaluate")

#: Classical methods by name; ``bm3d`` only where the package is installed; ``-sigma``: given the true noise level.
CLASSICAL_METHODS: tuple[str, ...] = ("input", "nlm", "bm3d", "nlm-sigma", "bm3d-sigma")
GIVEN_SIGMA_SUFFIX = "-sigma"
NLM_SETTINGS: dict[str, float] = {"h_over_sigma": 1.2, "patch_size": 5, "patch_distance": 6}


@dataclass(frozen=True)
class Method:
    """A named denoiser of HU stacks. ``kind``: input | classical | model (CLIP) | supervised (RED-CNN).

    ``denoise(hu)`` maps a (N, rows, cols) stack; a method with ``given_noise_level`` is called as
    ``denoise(hu, sigmas_hu)`` with the true noise std of each slice: run methods through :func:`apply_method`.
    ``context_slices``: the adjacent slices the method reads per output slice (3 for a 2.5-D model, whose stack
    must then be adjacent slices of one series and is given one neighbour more at each cut; 1 otherwise).
    """

    name: str
    kind: str
    description: str
    denoise: Callable[..., np.ndarray]
    provenance: dict[str, Any] = field(default_factory=dict)
    given_noise_level: bool = False
    context_slices: int = 1


def true_noise_sigma_hu(low_hu: np.ndarray, full_hu: np.ndarray) -> float:
    """The noise std (HU) that ``low_hu`` adds to its reference: std of the difference inside the body."""
    from ctdenoise.metrics import body_mask

    mask = body_mask(full_hu)
    difference = np.asarray(low_hu, np.float64) - np.asarray(full_hu, np.float64)
    return float(difference[mask].std()) if mask.any() else float(difference.std())


def apply_method(method: Method, low_hu: np.ndarray, full_hu: np.ndarray) -> np.ndarray:
    """``method`` on the (N, rows, cols) stack ``low_hu``; a ``given_noise_level`` method also gets the true
    noise std of each slice against ``full_hu`` (:func:`true_noise_sigma_hu`)."""
    if method.given_noise_level:
        return method.denoise(low_hu, [true_noise_sigma_hu(low, full) for low, full in zip(low_hu, full_hu)])
    return method.denoise(low_hu)


def _per_slice(function: Callable[[np.ndarray, float], np.ndarray], given_sigma: bool) -> Callable[..., np.ndarray]:
    """A stack denoiser from ``function(unit_slice, sigma_unit)``; sigma estimated per slice unless given (HU)."""
    def run(hu: np.ndarray, sigmas_hu: list[float] | None = None) -> np.ndarray:
        if given_sigma and sigmas_hu is None:
            raise ValueError("a given-sigma method needs the true noise std of each slice (sigmas_hu)")
        out = []
        for index, hu_slice in enumerate(hu):
            sigma_hu = sigmas_hu[index] if given_sigma and sigmas_hu is not None else noise_hu_local_std_percentile(hu_slice)
            out.append(unit_to_hu(function(hu_to_unit(hu_slice.astype(np.float64)), sigma_hu / HU_SPAN)))
        return np.stack(out).astype(np.float32)

    return run


def _nlm_unit(unit: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(
        unit, h=NLM_SETTINGS["h_over_sigma"] * sigma, sigma=sigma, fast_mode=True,
        patch_size=int(NLM_SETTINGS["patch_size"]), patch_distance=int(NLM_SETTINGS["patch_distance"]),
    )


def _bm3d_unit(unit: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return np.asarray(bm3d.bm3d(unit, sigma_psd=sigma))


def bm3d_available() -> bool:
    """True when the optional ``bm3d`` package can be imported."""
    return importlib.util.find_spec("bm3d") is not None


def classical_method(name: str) -> Method:
    """The classical method ``name`` (see :data:`CLASSICAL_METHODS`); ConfigError for others or a missing bm3d."""
    if name == "input":
        return Method("input", "input", "the low-dose image itself", lambda hu: np.asarray(hu, np.float32))
    base, given = (name[: -len(GIVEN_SIGMA_SUFFIX)], True) if name.endswith(GIVEN_SIGMA_SUFFIX) else (name, False)
    sigma_text = "the true noise sigma of each slice given (oracle)" if given else "noise sigma estimated per slice"
    if base == "nlm":
        return Method(
            name, "classical",
            f"scikit-image non-local means per slice on (HU+1024)/4096, {sigma_text}, h = 1.2 sigma",
            _per_slice(_nlm_unit, given), {"package": "scikit-image", **NLM_SETTINGS}, given_noise_level=given,
        )
    if base == "bm3d":
        if not bm3d_available():
            raise ConfigError("methods", "bm3d was asked for but the optional 'bm3d' package is not installed (pip install bm3d)")
        return Method(name, "classical", f"BM3D per slice on (HU+1024)/4096, {sigma_text}",
                      _per_slice(_bm3d_unit, given), {"package": "bm3d"}, given_noise_level=given)
    raise ConfigError("methods", f"unknown method {name!r}; known: {', '.join(CLASSICAL_METHODS)}")


def file_sha256(path: Path) -> str | None:
    """sha256 of ``path``'s bytes (:func:`ctdenoise.io.hashing.sha256_file`), or None when it does not exist."""
    return sha256_file(path) if path.is_file() else None


def _checkpoint_record(directory: Path) -> dict[str, Any]:
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    return {
        "checkpoint": str(directory),
        "tensors_sha256": config.get("tensors", {}).get("sha256"),
        "config_sha256": file_sha256(directory / "config.json"),
        "model_card_sha256": file_sha256(directory / "MODEL_CARD.md"),
    }


def clip_model_method(
    spec: str | Path, name: str = "clipdenoiser", device: str = "auto", batch_size: int | None = None,
    strength: float | str | None = None,
) -> Method:
    """The CLIPDenoiser named by ``spec`` (shipped model name or checkpoint folder), prepared once
    (:func:`~ctdenoise.runtime.prepare.load_prepared`) and run on every stack by :func:`denoise_hu`
    at ``strength`` (None: the default strength of :class:`~ctdenoise.runtime.settings.InferenceSettings`; ``"auto"``:
    each stack's strength from the model folder's strength table at the stack's estimated noise, logged; ``"low"``,
    ``"medium"``, ``"high"``: the preset's strength from the model folder's ``presets.json``, recorded with its name)."""
    from ctdenoise.model.context import context_slices_of
    from ctdenoise.runtime.denoise import denoise_hu
    from ctdenoise.runtime.prepare import load_prepared
    from ctdenoise.runtime.settings import InferenceSettings, resolve_strength
    from ctdenoise.strength_table import StrengthTable, strength_setting

    settings = InferenceSettings(device=device, batch_size=batch_size)
    model = load_prepared(spec, settings)  # once: every stack (chunk, sweep cell) reuses the prepared copy
    directory = model.model_dir
    assert directory is not None, "load_prepared records the folder it loaded"
    if strength is not None:
        settings = replace(settings, strength=strength_setting(strength, directory))
    table = settings.strength if isinstance(settings.strength, StrengthTable) else None
    record = {**_checkpoint_record(directory), "encoder": json.loads((directory / "config.json").read_text())["encoder"],
              "strength": "auto" if table else settings.strength}
    if table:
        record["strength_table"] = {"file": table.source, "points": [list(p) for p in table.points]}
    elif isinstance(strength, str):
        record["strength_preset"] = strength
    shown = "auto (strength table)" if table else f"{settings.strength:g}"

    def denoise(hu: np.ndarray) -> np.ndarray:
        chosen = resolve_strength(settings, np.asarray(hu, dtype=np.float32))
        if table:
            log.info("%s: strength auto chose %g for a stack of %d slice(s)", name, chosen.strength, len(hu))
        return denoise_hu(model, hu, chosen)

    context = context_slices_of(model.network)
    if context > 1:
        record["context_slices"] = context
    return Method(name, "model", f"CLIPDenoiser checkpoint {spec}, strength {shown}", denoise, record,
                  context_slices=context)


def redcnn_method(directory: str | Path, name: str = "redcnn", device: str = "auto", batch_size: int = 4) -> Method:
    """The supervised RED-CNN baseline from a checkpoint folder of architecture ``redcnn``
    (:func:`ctdenoise.model.load_checkpoint`; CheckpointError naming the folder for another architecture),
    prepared once and run by :func:`~ctdenoise.runtime.denoise.denoise_hu` as the CLIPDenoiser is: full
    strength, fp32 PyTorch on ``device``, ``batch_size`` slices at a time."""
    from ctdenoise.model import REDCNN, load_checkpoint
    from ctdenoise.runtime.denoise import denoise_hu
    from ctdenoise.runtime.prepare import prepare
    from ctdenoise.runtime.settings import InferenceSettings

    directory = Path(directory)
    network = load_checkpoint(directory)
    if not isinstance(network, REDCNN):
        raise CheckpointError(f"{directory}: holds a {type(network).__name__}, not a RED-CNN (architecture redcnn)")
    settings = InferenceSettings(device=device, precision="fp32", batch_size=batch_size, backend="torch", strength=1.0)
    model = prepare(network, settings, model_dir=directory)
    return Method(
        name, "supervised", f"RED-CNN checkpoint {directory}", lambda hu: denoise_hu(model, hu),
        _checkpoint_record(directory),
    )
