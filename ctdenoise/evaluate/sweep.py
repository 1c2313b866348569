"""Generalisation report: every method on noise it was not trained for (the paper's central claim).

From each case's normal-dose slices, :func:`run_sweep` makes noisy inputs under several conditions and
scores every method against the normal-dose slice:

* ``physics`` at each dose fraction k: :func:`ctdenoise.simulate.simulate_low_dose` (Poisson +
  electronic noise, filtered back-projection). The normal-dose scan already holds its own noise, so
  only the excess noise of dose k is added (``input_has_noise=True``, Zeng et al. 2015).
* ``gaussian`` at each sigma (in 1/255 of the (HU+1024)/4096 scale, the paper's unit; its CT model
  is trained at 5): :func:`ctdenoise.simulate.add_gaussian_noise` on the model scale.

Noise is seeded per (run seed, case, condition), so every method sees the same noisy images. Outputs:
``sweep.csv`` / ``sweep.json`` (mean and sample std over slices per case and condition, method and
protocol; ``case`` ``all`` pools every case), ``sweep.md`` (the pooled table, one table per case with
PSNR and body RMSE, plus findings computed from them: the best method per condition and each trained
network's gain over the input and over the best classical filter, flagged where it is not positive)
and ``psnr_vs_dose.png``. Metrics: PSNR, SSIM and RMSE under each protocol, and the protocol-free body
RMSE (:func:`ctdenoise.metrics.body_rmse_hu`).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctdenoise.errors import ConfigError
from ctdenoise.evaluate.figures import sweep_plot
from ctdenoise.evaluate.methods import Method, apply_method
from ctdenoise.evaluate.pairing import CaseSpec, case_seed
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.metrics import body_rmse_hu, compute_metrics, get_protocol
from ctdenoise.recon_kernels import get_kernel
from ctdenoise.simulate import add_gaussian_noise, simulate_low_dose

SWEEP_CSV, SWEEP_JSON, SWEEP_MARKDOWN, SWEEP_PLOT = "sweep.csv", "sweep.json", "sweep.md", "psnr_vs_dose.png"
DEFAULT_DOSES: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)
#: The Gaussian sigma of the paper's CT training recipe, in 1/255 of the model scale.
PAPER_SIGMA_255: float = 5.0
#: The ``case`` of the rows that pool every case.
ALL_CASES = "all"
SWEEP_METRICS = ("psnr", "ssim", "rmse_hu", "rmse_body_hu")
SWEEP_FIELDS = ("case", "noise", "level", "method", "protocol", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
                "rmse_hu_mean", "rmse_hu_std", "rmse_body_hu_mean", "rmse_body_hu_std", "slices")


@dataclass(frozen=True)
class SweepSettings:
    """Conditions of a sweep: dose fractions in (0, 1], Gaussian sigmas (x/255), protocols, seed, slice budget,
    and the reconstruction ``kernel`` of the simulated doses (a :data:`ctdenoise.simulate.KERNELS` name).

    ``max_slices_per_case`` keeps that many evenly spaced slices of each case (simulation costs about
    a second per 512x512 slice and condition on a CPU); None keeps all.
    """

    doses: tuple[float, ...] = DEFAULT_DOSES
    sigmas: tuple[float, ...] = ()
    protocols: tuple[str, ...] = ("redcnn",)
    seed: int = 0
    max_slices_per_case: int | None = 32
    kernel: str = "hann"

    def __post_init__(self) -> None:
        get_kernel(self.kernel)
        if not self.doses and not self.sigmas:
            raise ConfigError("sweep", "give at least one dose fraction or Gaussian sigma")
        for dose in self.doses:
            if not 0 < dose <= 1:
                raise ConfigError("sweep_dose", f"dose fractions must lie in (0, 1], got {dose}")
        for sigma in self.sigmas:
            if sigma <= 0:
                raise ConfigError("sweep_sigma", f"Gaussian sigmas must be > 0, got {sigma}")
        for name in self.protocols:
            get_protocol(name)

    def conditions(self) -> list[tuple[str, float]]:
        """(noise kind, level) pairs in report order."""
        return [("physics", d) for d in self.doses] + [("gaussian", s) for s in self.sigmas]


def noisy_input(
    full_hu: np.ndarray, spacing: tuple[float, float], noise: str, level: float, rng: np.random.Generator,
    kernel: str = "hann",
) -> np.ndarray:
    """The noisy HU stack of one condition (see the module docstring); ``kernel`` applies to physics noise."""
    if noise == "physics":
        return simulate_low_dose(full_hu, spacing, dose_fraction=level, kernel=kernel, seed=rng)
    return unit_to_hu(add_gaussian_noise(hu_to_unit(full_hu), level / 255.0, rng=rng)).astype(np.float32)


def _kept_slices(n: int, budget: int | None) -> np.ndarray:
    if budget is None or n <= budget:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, budget).round().astype(int))


def _check_adjacent(methods: Sequence[Method], kept: np.ndarray, n_slices: int, case: str) -> None:
    """ConfigError when a 2.5-D method (``context_slices`` > 1) would get slices that are not adjacent: its
    neighbours would be wrong, so it is refused rather than scored on them."""
    for method in methods:
        if method.context_slices > 1 and len(kept) < n_slices:
            raise ConfigError(
                "max_slices_per_case",
                f"method {method.name} ({method.description}) reads {method.context_slices} adjacent slices, but the "
                f"sweep keeps {len(kept)} spaced slices of the {n_slices} of case {case}; raise max_slices_per_case "
                "to cover every slice to score a 2.5-D model",
            )


def run_sweep(
    cases: Sequence[CaseSpec],
    methods: Sequence[Method],
    out_dir: Path | str,
    settings: SweepSettings = SweepSettings(),
    progress: Callable[[int], object] | None = None,
) -> list[dict[str, Any]]:
    """Run every method under every condition on the normal-dose slices of ``cases``; write the report.

    Returns the aggregated rows (one per case or :data:`ALL_CASES`, condition, method and protocol; fields
    :data:`SWEEP_FIELDS`).
    ``progress`` is called with the number of slices finished after each (case, condition).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores: dict[tuple[str, str, float, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for case in cases:
        full = case.load_full()
        kept = _kept_slices(full.shape[0], settings.max_slices_per_case)
        _check_adjacent(methods, kept, full.shape[0], case.name)
        full_hu = full.hu[kept]
        for noise, level in settings.conditions():
            rng = case_seed(settings.seed, f"{case.name}|{noise}|{level}")
            low = noisy_input(full_hu, full.spacing[1:], noise, level, rng, settings.kernel)
            for method in methods:
                for pred, ref in zip(apply_method(method, low, full_hu), full_hu):
                    body_rmse = body_rmse_hu(pred, ref)
                    for protocol in settings.protocols:
                        result: dict[str, Any] = {**compute_metrics(pred, ref, protocol), "rmse_body_hu": body_rmse}
                        for case_name in (case.name, ALL_CASES):
                            cell = scores[(case_name, noise, level, method.name, result["protocol"])]
                            for metric in SWEEP_METRICS:
                                cell[metric].append(result[metric])
            if progress is not None:
                progress(len(full_hu))
    rows = [_row(key, cell) for key, cell in scores.items()]
    write_sweep(rows, methods, settings, out_dir)
    return rows


def _row(key: tuple[str, str, float, str, str], cell: dict[str, list[float]]) -> dict[str, Any]:
    case, noise, level, method, protocol = key
    row: dict[str, Any] = {"case": case, "noise": noise, "level": level, "method": method, "protocol": protocol}
    for metric, values in cell.items():
        array = np.asarray(values)
        row[f"{metric}_mean"] = float(array.mean())
        row[f"{metric}_std"] = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    row["slices"] = len(cell["psnr"])
    return row


def _level_label(noise: str, level: float) -> str:
    return f"dose {level:g}" if noise == "physics" else f"Gaussian sigma {level:g}/255"


def findings(rows: Sequence[dict[str, Any]], methods: Sequence[Method], protocol: str, case: str = ALL_CASES) -> list[str]:
    """Sentences computed from the ``case`` rows under ``protocol``: best method per condition, and for every
    trained network its PSNR gain over the input and over the best classical filter, flagged when <= 0."""
    table = {(r["noise"], r["level"], r["method"]): r["psnr_mean"] for r in rows
             if r["protocol"] == protocol and r["case"] == case}
    kinds = {m.name: m.kind for m in methods}
    lines = []
    for noise, level in sorted({(n, lv) for n, lv, _ in table}, key=lambda c: (c[0] != "physics", -c[1] if c[0] == "physics" else c[1])):
        here = {m: v for (n, lv, m), v in table.items() if (n, lv) == (noise, level)}
        best = max(here, key=here.__getitem__)
        parts = [f"best: {best} ({here[best]:.2f} dB)"]
        classical = {m: v for m, v in here.items() if kinds.get(m) == "classical"}
        for name, value in here.items():
            if kinds.get(name) not in ("model", "supervised"):
                continue
            gain = value - here.get("input", float("nan"))
            text = f"{name} {gain:+.2f} dB over the input"
            if classical:
                best_classical = max(classical, key=classical.__getitem__)
                text += f", {value - classical[best_classical]:+.2f} dB vs {best_classical}"
                if value <= classical[best_classical]:
                    text += " (does not beat the classical filter)"
            if gain <= 0:
                text += " (no gain over the input)"
            parts.append(text)
        lines.append(f"- {_level_label(noise, level)}: " + "; ".join(parts))
    return lines


def markdown_report(rows: Sequence[dict[str, Any]], methods: Sequence[Method], settings: SweepSettings) -> str:
    """The sweep as Markdown: one table per protocol (mean PSNR dB / SSIM per condition and method), one per case
    (PSNR / body RMSE, first protocol), each with its findings."""
    text = []
    for protocol in settings.protocols:
        label = get_protocol(protocol).label
        text.append(f"### PSNR (dB) / SSIM, protocol `{label}`\n")
        text.extend(_condition_table(rows, methods, settings, label, ALL_CASES, "ssim_mean", 4))
        text.append("\nFindings (" + label + "):\n")
        text.extend(findings(rows, methods, label))
        text.append("")
    label = get_protocol(settings.protocols[0]).label
    for case in sorted({r["case"] for r in rows} - {ALL_CASES}):
        text.append(f"### Case `{case}`: PSNR (dB, `{label}`) / body RMSE (HU)\n")
        text.extend(_condition_table(rows, methods, settings, label, case, "rmse_body_hu_mean", 1))
        text.append(f"\nFindings ({case}, {label}):\n")
        text.extend(findings(rows, methods, label, case))
        text.append("")
    return "\n".join(text) + "\n"


def _condition_table(
    rows: Sequence[dict[str, Any]], methods: Sequence[Method], settings: SweepSettings, label: str, case: str,
    second: str, digits: int,
) -> list[str]:
    """Markdown rows of one table: a row per condition, a column per method, ``psnr_mean / <second>``."""
    names = [m.name for m in methods]
    cells = {(r["noise"], r["level"], r["method"]): r for r in rows if r["protocol"] == label and r["case"] == case}
    lines = ["| noise | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for noise, level in settings.conditions():
        values = [cells.get((noise, level, n)) for n in names]
        lines.append(f"| {_level_label(noise, level)} | " + " | ".join(
            "n/a" if v is None else f"{v['psnr_mean']:.2f} / {v[second]:.{digits}f}" for v in values) + " |")
    return lines


def write_sweep(rows: Sequence[dict[str, Any]], methods: Sequence[Method], settings: SweepSettings, out_dir: Path) -> None:
    """Write sweep.csv, sweep.json, sweep.md and the PSNR-vs-dose plot (first protocol) into ``out_dir``."""
    with (out_dir / SWEEP_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWEEP_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    record = {
        "conditions": [{"noise": n, "level": lv} for n, lv in settings.conditions()],
        "gaussian_sigma_unit": "1/255 of the (HU+1024)/4096 scale",
        "training_sigma_of_paper_recipe": PAPER_SIGMA_255,
        "seed": settings.seed,
        "max_slices_per_case": settings.max_slices_per_case,
        "methods": {m.name: {"kind": m.kind, "description": m.description, "provenance": m.provenance} for m in methods},
        "rows": list(rows),
    }
    (out_dir / SWEEP_JSON).write_text(json.dumps(record, indent=2), encoding="utf-8")
    (out_dir / SWEEP_MARKDOWN).write_text(markdown_report(rows, methods, settings), encoding="utf-8")
    label = get_protocol(settings.protocols[0]).label
    physics: dict[str, list[tuple[float, float]]] = defaultdict(list)
    gaussian: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if row["protocol"] == label and row["case"] == ALL_CASES:
            (physics if row["noise"] == "physics" else gaussian)[row["method"]].append((row["level"], row["psnr_mean"]))
    sweep_plot(dict(physics), dict(gaussian), label, out_dir / SWEEP_PLOT, training_sigma=PAPER_SIGMA_255)
