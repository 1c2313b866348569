"""The methods one evaluation compares: the low-dose input, classical filters, and trained networks.

Each :class:`Method` maps a (N, rows, cols) HU stack to a denoised HU stack of the same shape and
carries a provenance record for the summary (checkpoint hashes, parameters).

* ``input``: the low-dose image itself (the floor every method must beat).
* ``nlm``: scikit-image non-local means, per slice, on the HU image clipped to [-1024, 3072] and mapped
  to [0, 1] (the model scale; a linear map of HU, so the filter acts on HU, not on a display window,
  and nothing outside a window is lost); 5x5 patches, search distance 6, fast mode, ``h = 1.2 sigma``.
  Sigma is estimated per slice by :func:`estimate_noise_sigma_hu`. scikit-image's wavelet estimate
  (``estimate_sigma``) is not used: CT noise after filtered back-projection is spatially correlated and
  has little energy in the finest wavelet band, and on simulated quarter-dose slices it reported a
  third of the true noise std, which left the filter almost inactive. The factor 1.2 was chosen on
  training slices (CQ500-CT-310, b2cbe507f250 of ``scripts/prepare_offline_ct.py``) at quarter dose
  and Gaussian 5/255, never on the held-out slices.
* ``bm3d``: the ``bm3d`` package (non-commercial licence; not a dependency), same scale and sigma
  estimate; available only when the package is installed.
* a CLIPDenoiser checkpoint (:func:`clip_model_method`) or a RED-CNN checkpoint (:func:`redcnn_method`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctdenoise.errors import ConfigError
from ctdenoise.intensity import HU_SPAN, hu_to_unit, unit_to_hu

#: Classical methods by name; ``bm3d`` only where the package is installed.
CLASSICAL_METHODS: tuple[str, ...] = ("input", "nlm", "bm3d")
NLM_SETTINGS: dict[str, float] = {"h_over_sigma": 1.2, "patch_size": 5, "patch_distance": 6}
#: Noise estimate: local std in 7x7 windows whose mean lies in [-300, 300] HU (soft tissue and water),
#: its 25th percentile (edges and texture raise the upper percentiles).
NOISE_WINDOW, NOISE_MEAN_RANGE_HU, NOISE_PERCENTILE = 7, (-300.0, 300.0), 25.0


@dataclass(frozen=True)
class Method:
    """A named denoiser of HU stacks. ``kind``: input | classical | model (CLIP) | supervised (RED-CNN)."""

    name: str
    kind: str
    description: str
    denoise: Callable[[np.ndarray], np.ndarray]
    provenance: dict[str, Any] = field(default_factory=dict)


def _per_slice(function: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def run(hu: np.ndarray) -> np.ndarray:
        return np.stack([unit_to_hu(function(hu_to_unit(s.astype(np.float64)))) for s in hu]).astype(np.float32)

    return run


def estimate_noise_sigma_hu(hu: np.ndarray) -> float:
    """Noise std (HU) of one slice: the 25th percentile of the 7x7 local std over soft-tissue-range windows.

    Within 10 to 20% of the true std on physics-simulated and Gaussian noise of real slices, where the
    wavelet estimate is a factor 3 low for FBP-correlated noise. Slices without soft tissue fall back to
    scikit-image's wavelet estimate.
    """
    from scipy.ndimage import uniform_filter

    hu = np.asarray(hu, dtype=np.float64)
    mean = uniform_filter(hu, NOISE_WINDOW)
    local_std = np.sqrt(np.clip(uniform_filter(hu * hu, NOISE_WINDOW) - mean * mean, 0.0, None))
    tissue = (mean > NOISE_MEAN_RANGE_HU[0]) & (mean < NOISE_MEAN_RANGE_HU[1])
    if tissue.sum() < NOISE_WINDOW**2:
        from skimage.restoration import estimate_sigma

        return float(estimate_sigma(hu))
    return float(np.percentile(local_std[tissue], NOISE_PERCENTILE))


def _nlm_unit(unit: np.ndarray) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sigma_hu(unit_to_hu(unit)) / HU_SPAN
    return denoise_nl_means(
        unit, h=NLM_SETTINGS["h_over_sigma"] * sigma, sigma=sigma, fast_mode=True,
        patch_size=int(NLM_SETTINGS["patch_size"]), patch_distance=int(NLM_SETTINGS["patch_distance"]),
    )


def _bm3d_unit(unit: np.ndarray) -> np.ndarray:
    import bm3d

    return np.asarray(bm3d.bm3d(unit, sigma_psd=estimate_noise_sigma_hu(unit_to_hu(unit)) / HU_SPAN))


def bm3d_available() -> bool:
    """True when the optional ``bm3d`` package can be imported."""
    return importlib.util.find_spec("bm3d") is not None


def classical_method(name: str) -> Method:
    """The classical method ``name`` (``input``, ``nlm`` or ``bm3d``); ConfigError for others or a missing bm3d."""
    if name == "input":
        return Method("input", "input", "the low-dose image itself", lambda hu: np.asarray(hu, np.float32))
    if name == "nlm":
        return Method(
            "nlm", "classical",
            "scikit-image non-local means per slice on (HU+1024)/4096, noise sigma estimated per slice, h = 1.2 sigma",
            _per_slice(_nlm_unit), {"package": "scikit-image", **NLM_SETTINGS},
        )
    if name == "bm3d":
        if not bm3d_available():
            raise ConfigError("methods", "bm3d was asked for but the optional 'bm3d' package is not installed (pip install bm3d)")
        return Method("bm3d", "classical", "BM3D per slice on (HU+1024)/4096, sigma estimated per slice",
                      _per_slice(_bm3d_unit), {"package": "bm3d"})
    raise ConfigError("methods", f"unknown method {name!r}; known: {', '.join(CLASSICAL_METHODS)}")


def file_sha256(path: Path) -> str | None:
    """sha256 of ``path``'s bytes, or None when it does not exist."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _checkpoint_record(directory: Path) -> dict[str, Any]:
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    return {
        "checkpoint": str(directory),
        "tensors_sha256": config.get("tensors", {}).get("sha256"),
        "config_sha256": file_sha256(directory / "config.json"),
        "model_card_sha256": file_sha256(directory / "MODEL_CARD.md"),
    }


def clip_model_method(spec: str | Path, name: str = "clipdenoiser", device: str = "auto", batch_size: int | None = None) -> Method:
    """The CLIPDenoiser named by ``spec`` (shipped model name or checkpoint folder), run by :func:`denoise_hu`."""
    from ctdenoise.inference import InferenceSettings, denoise_hu
    from ctdenoise.registry import load_model, resolve_model_dir

    directory = resolve_model_dir(spec)
    model = load_model(spec)
    settings = InferenceSettings(device=device, batch_size=batch_size)
    record = {**_checkpoint_record(directory), "encoder": json.loads((directory / "config.json").read_text())["encoder"]}
    return Method(name, "model", f"CLIPDenoiser checkpoint {spec}", lambda hu: denoise_hu(model, hu, settings), record)


def redcnn_method(directory: str | Path, name: str = "redcnn", device: str = "auto", batch_size: int = 4) -> Method:
    """The supervised RED-CNN baseline from a ``ctdenoise-redcnn`` checkpoint folder."""
    from ctdenoise.evaluate.baselines.redcnn import load_redcnn, redcnn_denoise_hu
    from ctdenoise.inference import resolve_device

    directory = Path(directory)
    model, _ = load_redcnn(directory)
    torch_device = str(resolve_device(device))
    return Method(
        name, "supervised", f"RED-CNN checkpoint {directory}",
        lambda hu: redcnn_denoise_hu(model, hu, device=torch_device, batch_size=batch_size),
        _checkpoint_record(directory),
    )
