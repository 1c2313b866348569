"""Image-quality metrics under named protocols (docs/evaluation.md has the table of protocols).

The LDCT literature scores the same images on different HU ranges, and the same error reads about
20 dB apart between them, so a number without its protocol means little. Every protocol fixes how HU
become the image that PSNR and SSIM see (clip or display window), the data range, the SSIM window,
and the HU range of the RMSE; every result carries the protocol's label.

| protocol | PSNR/SSIM image | data range | SSIM window | RMSE (HU) on |
|---|---|---|---|---|
| ``redcnn`` | HU clipped to [-160, 240] | 400 | Gaussian 11x11, sigma 1.5 | [-160, 240] |
| ``clip-paper`` | HU clipped to [-1024, 3072] | 4096 | Gaussian 11x11, sigma 1.5 | [-1024, 3072] |
| ``ldctbench`` | anatomy window -> [0, 1] | 1 | uniform 7x7 (skimage default) | [-1024, 1900] |

SSIM follows Wang et al. 2004 with K1 = 0.01, K2 = 0.03 and is averaged over the pixels whose window
lies inside the image (a "valid" border), exactly as ``skimage.metrics.structural_similarity`` does:
the Gaussian protocols equal it with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``
and the ldctbench protocol equals its defaults (7x7 uniform window, sample covariance). The RED-CNN
and CLIPDenoising scripts use pytorch-ssim instead, which zero-pads the border and averages over the
whole image: that reads somewhat higher under ``redcnn`` (0.826 against 0.819 here for a 512 x 512 slice
at simulated quarter dose), so compare SSIM only between numbers computed the same way. MONAI's
SSIMMetric uses the same valid border; it equals these values to float32 precision for the Gaussian
protocols and differs under ``ldctbench`` only because it uses the population covariance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from scipy.ndimage import binary_fill_holes, gaussian_filter, label, uniform_filter

from ctdenoise.errors import ConfigError, InputError
from ctdenoise.intensity import Window, get_window

SSIM_K1: float = 0.01
SSIM_K2: float = 0.03

#: Anatomies of the ldct-benchmark protocol and their windows (abdomen 50/400, chest -600/1500, head 40/80).
LDCTBENCH_ANATOMIES: tuple[str, ...] = ("abdomen", "chest", "head")


@dataclass(frozen=True)
class MetricProtocol:
    """How HU images are compared: the image PSNR/SSIM see, the data range, the SSIM window, the RMSE range.

    Exactly one of ``hu_range`` (clip, then compare in HU) and ``window`` (map the display window
    linearly to [0, 1], as DICOM's VOI LUT and ldct-benchmark do) is set.
    """

    name: str
    data_range: float
    ssim_window: Literal["gaussian", "uniform"]
    ssim_size: int
    ssim_sample_covariance: bool
    rmse_hu_range: tuple[float, float]
    hu_range: tuple[float, float] | None = None
    window: Window | None = None
    anatomy: str | None = None
    ssim_sigma: float = 1.5
    source: str = ""

    def __post_init__(self) -> None:
        if (self.hu_range is None) == (self.window is None):
            raise ConfigError("protocol", f"{self.name}: set exactly one of hu_range and window")

    @property
    def label(self) -> str:
        """The name that results carry: the protocol name, plus ``:anatomy`` for windowed protocols."""
        return f"{self.name}:{self.anatomy}" if self.anatomy else self.name

    def image(self, hu: np.ndarray) -> np.ndarray:
        """The float64 image on which PSNR and SSIM are computed under this protocol."""
        hu = np.asarray(hu, dtype=np.float64)
        if self.window is not None:
            # DICOM PS3.3 C.11.2.1.2 linear VOI function, as ldct-benchmark's apply_center_width.
            centre, width = self.window.center - 0.5, self.window.width - 1.0
            return np.clip((hu - centre) / width + 0.5, 0.0, 1.0)
        return np.clip(hu, *self.hu_range)  # type: ignore[misc]  # set when window is None


def _clipped_hu_protocol(name: str, low: float, high: float, source: str) -> MetricProtocol:
    """A protocol that clips HU to [low, high] for every metric, with the Gaussian 11x11 SSIM."""
    return MetricProtocol(
        name=name,
        hu_range=(low, high),
        data_range=high - low,
        rmse_hu_range=(low, high),
        ssim_window="gaussian",
        ssim_size=11,
        ssim_sigma=1.5,
        ssim_sample_covariance=False,
        source=source,
    )


PROTOCOLS: dict[str, MetricProtocol] = {
    "redcnn": _clipped_hu_protocol(
        "redcnn", -160.0, 240.0, "RED-CNN (Chen et al. 2017), CTformer, WGAN-VGG evaluation scripts"
    ),
    "clip-paper": _clipped_hu_protocol(
        "clip-paper", -1024.0, 3072.0, "CLIPDenoising (Cheng et al. 2024) CT test script"
    ),
    "ldctbench": MetricProtocol(
        name="ldctbench",
        window=get_window("abdomen"),
        anatomy="abdomen",
        data_range=1.0,
        ssim_window="uniform",
        ssim_size=7,
        ssim_sample_covariance=True,
        rmse_hu_range=(-1024.0, 1900.0),
        source="ldct-benchmark (Eulig et al. 2024)",
    ),
}


def get_protocol(name: str, anatomy: str = "abdomen") -> MetricProtocol:
    """The protocol called ``name`` (a key of :data:`PROTOCOLS`, or a label such as ``ldctbench:chest``).

    ``anatomy`` picks the ldct-benchmark window (``abdomen``, ``chest`` or ``head``) and is ignored by
    the protocols that clip HU. Unknown names or anatomies raise :class:`ConfigError` listing the choices.
    """
    base, _, labelled_anatomy = name.partition(":")
    if base not in PROTOCOLS:
        raise ConfigError("protocol", f"unknown metric protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[base]
    if protocol.window is None:
        return protocol
    anatomy = labelled_anatomy or anatomy
    if anatomy not in LDCTBENCH_ANATOMIES:
        raise ConfigError(
            "anatomy", f"unknown anatomy {anatomy!r} for {base}; known: {', '.join(LDCTBENCH_ANATOMIES)}"
        )
    return replace(protocol, window=get_window(anatomy), anatomy=anatomy)


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB; ``inf`` for identical images."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(pred: np.ndarray, ref: np.ndarray, protocol: MetricProtocol) -> float:
    """Mean SSIM of two protocol images (see the module docstring for the window and border rules)."""
    if min(pred.shape) < protocol.ssim_size:
        raise InputError(
            None,
            f"image {pred.shape} is smaller than the {protocol.ssim_size}-pixel SSIM window of {protocol.label}",
        )
    if protocol.ssim_window == "gaussian":
        radius = protocol.ssim_size // 2

        def local_mean(x: np.ndarray) -> np.ndarray:
            return gaussian_filter(x, protocol.ssim_sigma, truncate=radius / protocol.ssim_sigma, mode="reflect")

    else:

        def local_mean(x: np.ndarray) -> np.ndarray:
            return uniform_filter(x, size=protocol.ssim_size, mode="reflect")

    n_points = protocol.ssim_size**2
    cov_norm = n_points / (n_points - 1.0) if protocol.ssim_sample_covariance else 1.0
    mu_p, mu_r = local_mean(pred), local_mean(ref)
    var_p = cov_norm * (local_mean(pred * pred) - mu_p * mu_p)
    var_r = cov_norm * (local_mean(ref * ref) - mu_r * mu_r)
    cov = cov_norm * (local_mean(pred * ref) - mu_p * mu_r)
    c1 = (SSIM_K1 * protocol.data_range) ** 2
    c2 = (SSIM_K2 * protocol.data_range) ** 2
    ssim_map = ((2 * mu_p * mu_r + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_r**2 + c1) * (var_p + var_r + c2))
    pad = (protocol.ssim_size - 1) // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean())


def _as_array(image: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(None, f"{what} holds NaN or infinite values")
    return array


def _resolve(protocol: MetricProtocol | str) -> MetricProtocol:
    return get_protocol(protocol) if isinstance(protocol, str) else protocol


def compute_metrics(
    pred_hu: np.ndarray | torch.Tensor, ref_hu: np.ndarray | torch.Tensor, protocol: MetricProtocol | str
) -> dict[str, float | str]:
    """PSNR (dB), SSIM and RMSE (HU) of one 2D slice against its reference, under ``protocol``.

    Returns ``{"psnr", "ssim", "rmse_hu", "protocol"}``; ``protocol`` is the protocol's label.
    """
    protocol = _resolve(protocol)
    pred, ref = _as_array(pred_hu, "prediction"), _as_array(ref_hu, "reference")
    if pred.ndim != 2 or pred.shape != ref.shape:
        raise InputError(None, f"expects two 2D slices of one shape, got {pred.shape} and {ref.shape}")
    pred_image, ref_image = protocol.image(pred), protocol.image(ref)
    rmse = np.sqrt(np.mean((np.clip(pred, *protocol.rmse_hu_range) - np.clip(ref, *protocol.rmse_hu_range)) ** 2))
    return {
        "psnr": psnr(pred_image, ref_image, protocol.data_range),
        "ssim": ssim(pred_image, ref_image, protocol),
        "rmse_hu": float(rmse),
        "protocol": protocol.label,
    }


#: Reference voxels above this are body (soft tissue, bone, contrast); lungs and bowel gas are filled in.
BODY_THRESHOLD_HU: float = -500.0
#: HU range the body RMSE clips both images to (the model's input range).
BODY_RMSE_HU_RANGE: tuple[float, float] = (-1024.0, 3072.0)


def body_mask(ref_hu: np.ndarray) -> np.ndarray:
    """The patient's body in a 2D reference slice: the largest connected region above
    :data:`BODY_THRESHOLD_HU`, holes filled (lungs, airways, bowel gas), without table or air."""
    ref = _as_array(ref_hu, "reference")
    regions, count = label(ref > BODY_THRESHOLD_HU)
    if count == 0:
        return np.zeros(ref.shape, dtype=bool)
    sizes = np.bincount(regions.ravel())[1:]
    return binary_fill_holes(regions == 1 + int(np.argmax(sizes)))


def body_rmse_hu(pred_hu: np.ndarray | torch.Tensor, ref_hu: np.ndarray | torch.Tensor) -> float:
    """RMSE in HU over :func:`body_mask` of the reference (both clipped to :data:`BODY_RMSE_HU_RANGE`).

    Protocol-free: unlike the protocols' RMSE it neither clips to a soft-tissue range nor counts the air
    around the patient, so it is the error a reader sees inside the body. NaN for a slice without a body.
    """
    pred, ref = _as_array(pred_hu, "prediction"), _as_array(ref_hu, "reference")
    if pred.ndim != 2 or pred.shape != ref.shape:
        raise InputError(None, f"expects two 2D slices of one shape, got {pred.shape} and {ref.shape}")
    mask = body_mask(ref)
    if not mask.any():
        return float("nan")
    diff = np.clip(pred, *BODY_RMSE_HU_RANGE) - np.clip(ref, *BODY_RMSE_HU_RANGE)
    return float(np.sqrt(np.mean(diff[mask] ** 2)))


def compute_volume_metrics(
    pred_hu: np.ndarray | torch.Tensor, ref_hu: np.ndarray | torch.Tensor, protocol: MetricProtocol | str
) -> list[dict[str, float | str | int]]:
    """Per-slice :func:`compute_metrics` of two (N, H, W) volumes; each dict also holds its ``slice`` index."""
    protocol = _resolve(protocol)
    pred, ref = _as_array(pred_hu, "prediction"), _as_array(ref_hu, "reference")
    if pred.ndim != 3 or pred.shape != ref.shape:
        raise InputError(None, f"expects two (N, H, W) volumes of one shape, got {pred.shape} and {ref.shape}")
    return [{"slice": i, **compute_metrics(p, r, protocol)} for i, (p, r) in enumerate(zip(pred, ref))]
