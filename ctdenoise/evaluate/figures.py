"""Evaluation figures (matplotlib, Agg backend: no display needed).

* :func:`slice_panel`: low-dose input, each method's output and the normal-dose reference in a
  diagnostic window (top row), and each image minus the reference (bottom row, +-``diff_hu`` HU; blank where the
  reference is below ``HU_MIN``, i.e. outside the scanner's field of view, where the metrics do not look either).
* :func:`metric_boxplot`: per-method box plots of PSNR and SSIM of every slice, under one protocol.
* :func:`sweep_plot`: mean PSNR against dose fraction (physics simulation) and against Gaussian sigma.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ctdenoise.intensity import HU_MIN, Window


def slice_panel(
    images: dict[str, np.ndarray],
    reference: np.ndarray,
    window: Window,
    path: Path,
    title: str,
    captions: dict[str, str] | None = None,
    diff_hu: float | None = None,
) -> Path:
    """Save a 2-row panel: ``images`` (name -> HU slice, input first) and the reference, then differences.

    ``captions`` adds a line (e.g. PSNR/SSIM) under each image's name; ``diff_hu`` (default: a quarter
    of the window width) is the HU range of the difference colour map. Differences are left blank where the
    reference holds no CT data (:func:`difference_map`).
    """
    diff_hu = diff_hu if diff_hu is not None else window.width / 4.0
    columns = len(images) + 1
    fig, axes = plt.subplots(2, columns, figsize=(2.6 * columns, 5.6), squeeze=False)
    panels = [*images.items(), ("reference", reference)]
    for col, (name, image) in enumerate(panels):
        top = axes[0, col]
        top.imshow(image, cmap="gray", vmin=window.lower, vmax=window.upper)
        caption = (captions or {}).get(name)
        top.set_title(f"{name}\n{caption}" if caption else name, fontsize=8)
        bottom = axes[1, col]
        if name == "reference":
            bottom.axis("off")
        else:
            shown = bottom.imshow(difference_map(image, reference), cmap="coolwarm", vmin=-diff_hu, vmax=diff_hu)
            bottom.set_title(f"{name} - reference", fontsize=8)
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
    if len(images):
        fig.colorbar(shown, ax=axes[1, -1], location="left", fraction=0.5, label="difference (HU)")
    fig.suptitle(f"{title}  (window C{window.center:g}/W{window.width:g} HU)", fontsize=9)
    return _save(fig, path)


def difference_map(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image - reference`` in HU, NaN (drawn blank) where the reference is below ``HU_MIN`` (-1024 HU): such voxels
    (-2000 or -3024 outside the field of view of many scanners, not declared as padding) hold no CT data, and a
    model's output there is clipped to its range, which would paint the outside of the field of view."""
    return np.where(reference < HU_MIN, np.nan, image.astype(np.float64) - reference)


def metric_boxplot(values: dict[str, dict[str, list[float]]], protocol: str, path: Path) -> Path:
    """Save box plots of ``values[method][metric]`` for PSNR and SSIM side by side, titled with ``protocol``."""
    metrics = ("psnr", "ssim")
    methods = list(values)
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(5.0, 1.3 * len(methods)) * 2, 4.0))
    for axis, metric in zip(axes, metrics):
        axis.boxplot([values[m][metric] for m in methods])
        axis.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
        axis.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        axis.set_title(f"{metric.upper()} per slice, protocol {protocol}", fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def sweep_plot(
    physics: dict[str, list[tuple[float, float]]],
    gaussian: dict[str, list[tuple[float, float]]],
    protocol: str,
    path: Path,
    training_sigma: float | None = None,
) -> Path:
    """Save mean PSNR vs dose fraction (``physics[method] = [(dose, psnr)]``) and vs Gaussian sigma (x/255)."""
    panels = [(physics, "dose fraction (physics simulation)"), (gaussian, "Gaussian sigma (x/255 of model scale)")]
    panels = [(data, label) for data, label in panels if data]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.0), squeeze=False)
    for axis, (data, label) in zip(axes[0], panels):
        for method, points in data.items():
            xs, ys = zip(*sorted(points))
            axis.plot(xs, ys, marker="o", label=method)
        if data is physics:
            levels = sorted({x for points in data.values() for x, _ in points})
            axis.set_xscale("log")
            axis.set_xticks(levels, [f"{x:g}" for x in levels])
            axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            axis.invert_xaxis()
        elif training_sigma is not None:
            axis.axvline(training_sigma, color="gray", linestyle="--", label="training sigma")
        axis.set_xlabel(label)
        axis.set_ylabel(f"mean PSNR (dB), protocol {protocol}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
