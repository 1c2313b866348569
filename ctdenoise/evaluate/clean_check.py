"""What a denoiser does to an image that needs no denoising: a noiseless textured phantom and normal-dose slices.

A denoiser should leave a clean image alone. Two checks, run by ``ctdenoise evaluate --clean-check``:

* **Noiseless textured phantom** (:func:`textured_phantom`): an axial body section made here, with no noise
  at all: fat and soft-tissue layers, organs with a textured parenchyma (smooth random fields at two
  scales, 10 and 15 HU std), contrast-filled vessels, kidneys, a vertebra with textured trabecular bone,
  and lungs with vessels; edges blurred slightly as a scanner would. Every change a method makes is an
  error: reported as the body RMSE of (output - phantom) and its 99th percentile of absolute change.
* **Normal-dose real slices**: the normal-dose slice of each case (the middle one) is denoised as it
  is. There is no truth here, so two numbers describe what was removed: the body RMSE of
  (output - input), and the share of fine detail kept, the std of a high-pass residual (input minus
  its Gaussian blur, sigma :data:`DETAIL_SIGMA_PX` pixels) inside the body after / before. A method
  that makes the image look "plastic" keeps little detail. A figure shows the slice, each output and
  each change.

Methods that are given the true noise level (``nlm-sigma``, ``bm3d-sigma``) are left out: on a clean
image that level is 0 and they would return it unchanged by construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from ctdenoise.evaluate.figures import slice_panel
from ctdenoise.evaluate.methods import Method
from ctdenoise.evaluate.pairing import CaseSpec
from ctdenoise.intensity import get_window
from ctdenoise.metrics import body_mask

CLEAN_CHECK_DIR = "clean_check"
PHANTOM_SIZE = 512
PHANTOM_SEED = 20261201
#: The Gaussian blur (pixels) whose residual counts as fine detail.
DETAIL_SIGMA_PX = 1.5


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1.0


def _texture(shape: tuple[int, int], rng: np.random.Generator, scale_px: float, std_hu: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), scale_px)
    return field * (std_hu / field.std())


def textured_phantom(size: int = PHANTOM_SIZE, seed: int = PHANTOM_SEED) -> np.ndarray:
    """A noiseless (size, size) float32 HU image of an abdominal section with textured tissue (see module docs)."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    s = size / 512.0
    hu = np.full(shape, -1000.0)
    body = _ellipse(shape, (256 * s, 256 * s), (170 * s, 230 * s))
    hu[body] = -100.0  # subcutaneous fat
    inner = _ellipse(shape, (256 * s, 256 * s), (150 * s, 205 * s))
    parenchyma = 45.0 + _texture(shape, rng, 2.0 * s, 10.0) + _texture(shape, rng, 6.0 * s, 15.0)
    hu[inner] = parenchyma[inner]
    for centre, radii, value in (
        ((220, 180), (70, 95), 60.0),   # liver
        ((215, 350), (40, 45), 50.0),   # spleen
        ((300, 170), (28, 20), 150.0),  # kidneys (contrast)
        ((300, 345), (28, 20), 150.0),
    ):
        organ = _ellipse(shape, (centre[0] * s, centre[1] * s), (radii[0] * s, radii[1] * s))
        hu[organ] = value + parenchyma[organ] - 45.0
    for y, x, r in ((250, 256, 9), (255, 285, 7), (200, 150, 4), (240, 205, 3), (190, 330, 3), (330, 256, 5)):
        hu[_ellipse(shape, (y * s, x * s), (r * s, r * s))] = 220.0  # vessels
    vertebra = _ellipse(shape, (345 * s, 256 * s), (30 * s, 32 * s))
    trabecular = _ellipse(shape, (345 * s, 256 * s), (24 * s, 26 * s))
    hu[vertebra] = 900.0
    hu[trabecular] = (250.0 + _texture(shape, rng, 1.5 * s, 80.0))[trabecular]
    for x in (150, 362):  # lung bases with vessels
        lung = _ellipse(shape, (140 * s, x * s), (45 * s, 60 * s))
        hu[lung] = (-850.0 + _texture(shape, rng, 2.0 * s, 40.0))[lung]
        for _ in range(12):
            y0, x0 = rng.normal(140 * s, 20 * s), rng.normal(x * s, 28 * s)
            dot = _ellipse(shape, (y0, x0), (2 * s, 2 * s)) & lung
            hu[dot] = 0.0
    return gaussian_filter(hu, 0.6).astype(np.float32)


def _detail_std(hu: np.ndarray, mask: np.ndarray) -> float:
    residual = hu - gaussian_filter(hu, DETAIL_SIGMA_PX)
    return float(residual[mask].std())


def _body_box(hu: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of the body in ``hu`` (the whole image when there is none), for the figures."""
    rows, cols = np.nonzero(body_mask(hu))
    if rows.size == 0:
        return (slice(None), slice(None))
    return (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))


def clean_image_change(output: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """How much ``output`` differs from the ``clean`` image it was made from, inside the body (HU)."""
    mask = body_mask(clean)
    change = (np.asarray(output, np.float64) - clean)[mask]
    return {
        "rmse_body_hu": float(np.sqrt(np.mean(change**2))),
        "p99_abs_change_hu": float(np.percentile(np.abs(change), 99)),
        "detail_kept": _detail_std(np.asarray(output, np.float64), mask) / _detail_std(np.asarray(clean, np.float64), mask),
    }


def run_clean_check(
    cases: Sequence[CaseSpec], methods: Sequence[Method], out_dir: Path, phantom_size: int = PHANTOM_SIZE
) -> dict[str, Any]:
    """Run every method on the phantom and on the middle normal-dose slice of each case; write
    ``clean_check.json``, ``clean_check.md`` and one figure per image into ``out_dir``; return the record."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {"phantom": textured_phantom(phantom_size)}
    for case in cases:
        full = case.load_full().hu
        images[case.name] = full[full.shape[0] // 2]
    record: dict[str, Any] = {"phantom_seed": PHANTOM_SEED, "phantom_size": phantom_size, "detail_sigma_px": DETAIL_SIGMA_PX,
                              "images": {}}
    window = get_window("abdomen")
    for name, clean in images.items():
        outputs = {m.name: m.denoise(clean[None])[0] for m in methods if not m.given_noise_level}
        scores = {method: clean_image_change(out, clean) for method, out in outputs.items()}
        record["images"][name] = scores
        captions = {m: f"change {v['rmse_body_hu']:.1f} HU, detail {100 * v['detail_kept']:.0f} %" for m, v in scores.items()}
        crop = _body_box(clean)
        slice_panel({m: out[crop] for m, out in outputs.items()}, clean[crop], window, out_dir / f"{name.replace('/', '_')}.png",
                    f"{name}: clean input (right), outputs and output - input", captions, diff_hu=50.0)
    (out_dir / "clean_check.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    (out_dir / "clean_check.md").write_text(markdown_table(record), encoding="utf-8")
    return record


def markdown_table(record: dict[str, Any]) -> str:
    """The clean check as Markdown: per image and method, body RMSE of the change, its 99th percentile, detail kept."""
    lines = ["| image | method | change, body RMSE (HU) | change, 99th pct (HU) | fine detail kept |", "|---|---|---|---|---|"]
    for image, by_method in record["images"].items():
        for method, v in by_method.items():
            lines.append(f"| {image} | {method} | {v['rmse_body_hu']:.2f} | {v['p99_abs_change_hu']:.1f} | {100 * v['detail_kept']:.0f} % |")
    return "\n".join(lines) + "\n"
