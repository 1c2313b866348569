"""One evaluation run: every method on every paired case, per-slice metrics, summary and figures.

:func:`evaluate_cases` writes into ``out_dir``:

* ``metrics.csv``: one row per (case, slice, method, protocol): PSNR (dB), SSIM, RMSE (HU), the slice
  position along the normal, and the protocol's label;
* ``summary.json``: mean and sample standard deviation (ddof=1) over slices, per patient and pooled
  over all slices ("overall"), for every method and protocol, with the protocols' definitions, the
  methods' provenance (checkpoint and model-card sha256), the cases and the software versions;
* ``summary.md``: the overall table in Markdown, protocol named in every header;
* ``figures/``: a before/after/reference/difference panel for the chosen slices of each case, in a
  diagnostic window, and one per-method box plot of PSNR and SSIM per protocol.

Slices are processed in chunks of :data:`CHUNK_SLICES`, so memory stays bounded by one chunk of every
method's output whatever the series length. A 2.5-D model (``Method.context_slices`` 3) is given each chunk with its
neighbouring slice on either side (where the series has one) and its output trimmed to the chunk, so each slice is
denoised from its real neighbours as a whole-series call would.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import math
import platform
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import ctdenoise
from ctdenoise.errors import ConfigError
from ctdenoise.evaluate.figures import metric_boxplot, slice_panel
from ctdenoise.evaluate.methods import Method, apply_method
from ctdenoise.evaluate.pairing import CaseSpec, PairedCase
from ctdenoise.intensity import get_window
from ctdenoise.metrics import body_rmse_hu, compute_metrics, get_protocol

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
SUMMARY_MARKDOWN = "summary.md"
FIGURES_DIR = "figures"
CSV_FIELDS = ("case", "patient", "slice", "position_mm", "method", "protocol", "psnr", "ssim", "rmse_hu", "rmse_body_hu")
METRIC_NAMES = ("psnr", "ssim", "rmse_hu", "rmse_body_hu")
CHUNK_SLICES = 16
_PACKAGES = ("numpy", "torch", "scikit-image", "scipy", "pydicom", "monai", "matplotlib", "bm3d")


@dataclass(frozen=True)
class EvaluationSettings:
    """``protocols``: metric protocols by name (``ctdenoise.metrics.PROTOCOLS``, docs/evaluation.md);
    ``window``: display window of the figures; ``figure_slices``: slice indices (within each case) to draw,
    None for each case's middle slice."""

    protocols: tuple[str, ...] = ("redcnn",)
    window: str = "abdomen"
    figure_slices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in self.protocols:
            get_protocol(name)
        try:
            get_window(self.window)
        except KeyError as exc:
            raise ConfigError("window", str(exc.args[0])) from None


def software_versions() -> dict[str, str | None]:
    """Versions of Python, ctdenoise and the packages whose behaviour the numbers depend on."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "ctdenoise": ctdenoise.__version__}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def protocol_record(name: str) -> dict[str, Any]:
    """A protocol's definition as plain data, for the summary."""
    protocol = get_protocol(name)
    record = {k: v for k, v in asdict(protocol).items() if k != "window"}
    if protocol.window is not None:
        record["window"] = {"center": protocol.window.center, "width": protocol.window.width}
    return record


def _statistics(values: list[float]) -> dict[str, float | int | None]:
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    if len(finite) == 0:
        return {"mean": None, "std": None, "n": len(array)}
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return {"mean": float(np.mean(finite)), "std": std, "n": len(array)}


def summarise(rows: Sequence[dict[str, Any]], key: str | None) -> dict[str, Any]:
    """Mean/std/n of every metric grouped by ``key`` (e.g. ``patient``; None pools all rows), method, protocol."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        group = (row[key] if key else None, row["method"], row["protocol"])
        for metric in METRIC_NAMES:
            groups[group][metric].append(float(row[metric]))
    tree: dict[str, Any] = {}
    for (group, method, protocol), metrics in groups.items():
        node = tree.setdefault(group, {}) if key else tree
        node.setdefault(method, {})[protocol] = {m: _statistics(v) for m, v in metrics.items()}
    return tree


def markdown_table(overall: dict[str, Any], protocols: Sequence[str], methods: Sequence[str]) -> str:
    """The overall results as a Markdown table: one row per method, mean +- std per protocol and metric."""
    labels = [get_protocol(p).label for p in protocols]
    header = ["method"] + [f"{metric} ({label})" for label in labels for metric in ("PSNR dB", "SSIM", "RMSE HU")]
    header.append("body RMSE HU")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [method]
        for label in labels:
            stats = overall.get(method, {}).get(label, {})
            for metric, digits in (("psnr", 2), ("ssim", 4), ("rmse_hu", 1)):
                s = stats.get(metric, {})
                cells.append("n/a" if s.get("mean") is None else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}")
        body = overall.get(method, {}).get(labels[0], {}).get("rmse_body_hu", {})
        cells.append("n/a" if body.get("mean") is None else f"{body['mean']:.1f} ± {body['std']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _figure_indices(case: PairedCase, settings: EvaluationSettings) -> list[int]:
    if settings.figure_slices is None:
        return [case.n_slices // 2]
    return [i for i in settings.figure_slices if 0 <= i < case.n_slices]


def _draw_panels(case: PairedCase, start: int, outputs: dict[str, np.ndarray], rows: list[dict], settings: EvaluationSettings,
                 figures: Path) -> list[Path]:
    drawn = []
    label = get_protocol(settings.protocols[0]).label
    for index in _figure_indices(case, settings):
        if not start <= index < start + len(next(iter(outputs.values()))):
            continue
        captions = {r["method"]: f"{r['psnr']:.2f} dB / {r['ssim']:.3f}" for r in rows
                    if r["slice"] == index and r["protocol"] == label}
        safe_name = case.name.replace("/", "_")
        drawn.append(slice_panel(
            {name: out[index - start] for name, out in outputs.items()}, case.full_hu[index], get_window(settings.window),
            figures / f"{safe_name}_slice{index:04d}.png",
            f"{case.name} slice {index} ({case.positions_mm[index]:.1f} mm); PSNR/SSIM under {label}", captions,
        ))
    return drawn


def _apply_to_chunk(method: Method, case: PairedCase, start: int, stop: int) -> np.ndarray:
    """``method`` on slices ``start:stop`` of ``case``; a method reading ``context_slices`` > 1 gets the chunk with
    ``context_slices // 2`` more slices on each side (within the series) and returns the chunk's slices only."""
    margin = method.context_slices // 2
    if margin == 0:
        return apply_method(method, case.low_hu[start:stop], case.full_hu[start:stop])
    low, high = max(start - margin, 0), min(stop + margin, case.n_slices)
    return apply_method(method, case.low_hu[low:high], case.full_hu[low:high])[start - low:stop - low]


def evaluate_case(
    case: PairedCase, methods: Sequence[Method], settings: EvaluationSettings, figures: Path,
    progress: Callable[[int], object] | None = None,
) -> list[dict[str, Any]]:
    """Metrics rows of every slice of ``case`` under every method and protocol; draws the chosen panels."""
    rows: list[dict[str, Any]] = []
    for start in range(0, case.n_slices, CHUNK_SLICES):
        stop = min(start + CHUNK_SLICES, case.n_slices)
        outputs = {m.name: _apply_to_chunk(m, case, start, stop) for m in methods}
        chunk_rows = []
        for name, output in outputs.items():
            for offset, (pred, ref) in enumerate(zip(output, case.full_hu[start:stop])):
                index = start + offset
                body_rmse = body_rmse_hu(pred, ref)
                for protocol in settings.protocols:
                    scores = {**compute_metrics(pred, ref, protocol), "rmse_body_hu": body_rmse}
                    chunk_rows.append({
                        "case": case.name, "patient": case.patient, "slice": index,
                        "position_mm": round(float(case.positions_mm[index]), 3), "method": name,
                        "protocol": scores["protocol"], **{m: scores[m] for m in METRIC_NAMES},
                    })
        _draw_panels(case, start, outputs, chunk_rows, settings, figures)
        rows.extend(chunk_rows)
        if progress is not None:
            progress(stop - start)
    return rows


def write_metrics_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write the per-slice rows to ``path`` with the columns :data:`CSV_FIELDS`."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def evaluate_cases(
    cases: Sequence[CaseSpec],
    methods: Sequence[Method],
    out_dir: Path | str,
    settings: EvaluationSettings = EvaluationSettings(),
    progress: Callable[[int], object] | None = None,
    data_description: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``methods`` on ``cases`` and write metrics.csv, summary.json, summary.md and figures.

    Returns the summary (the content of summary.json). ``progress`` is called with the number of
    slices finished (all methods) after each chunk. ``data_description`` is stored as the summary's
    ``data`` entry, next to the list of cases.
    """
    out_dir = Path(out_dir)
    figures = out_dir / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    case_records: list[dict[str, Any]] = []
    for spec in cases:
        case = spec.load()
        case_records.append({
            "name": case.name, "patient": case.patient, "slices": case.n_slices, "low_source": case.low_source,
            "full_source": case.full_source, "simulated_dose": case.simulated_dose,
            "pixel_spacing_mm": list(case.pixel_spacing_mm),
        })
        rows.extend(evaluate_case(case, methods, settings, figures, progress))
    write_metrics_csv(rows, out_dir / METRICS_FILE)
    labels = [get_protocol(p).label for p in settings.protocols]
    for protocol in labels:
        values = {m.name: {metric: [r[metric] for r in rows if r["method"] == m.name and r["protocol"] == protocol]
                           for metric in ("psnr", "ssim")} for m in methods}
        metric_boxplot(values, protocol, figures / f"boxplot_{protocol.replace(':', '_')}.png")
    overall = summarise(rows, None)
    summary = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "protocols": {label: protocol_record(p) for label, p in zip(labels, settings.protocols)},
        "statistics": "mean and sample std (ddof=1) over slices; 'overall' pools every slice of every case",
        "methods": {m.name: {"kind": m.kind, "description": m.description, "provenance": m.provenance} for m in methods},
        "model_card_sha256": {m.name: m.provenance.get("model_card_sha256") for m in methods if m.kind in ("model", "supervised")},
        "data": {**(data_description or {}), "cases": case_records, "slices": sum(c["slices"] for c in case_records)},
        "figure_window": settings.window,
        "per_patient": summarise(rows, "patient"),
        "overall": overall,
        "versions": software_versions(),
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(_json_safe(summary), indent=2), encoding="utf-8")
    (out_dir / SUMMARY_MARKDOWN).write_text(
        markdown_table(overall, settings.protocols, [m.name for m in methods]), encoding="utf-8"
    )
    return summary
