"""The image-quality report: one self-contained HTML page (``report.html``) drawn from ``iq.json``'s dict.

NPS curves, the TTF of every insert, d' against strength, the numbers as tables and before/after crops at a
soft-tissue window; plots by matplotlib (Agg), embedded as PNG, nothing fetched from a network.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ctdenoise.html_page import ct_image_png, escape, figure_png, img, page, table

_MARKERS = "osd^v<>p*h"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _reported_conditions(summary: dict) -> list[dict]:
    """The conditions shown in the curves: every kernel at the reported dose (or the scans themselves)."""
    if "conditions" not in summary:
        return [{"kernel": None, "dose": None, "methods": summary["methods"]}]
    dose = summary["condition"]["dose"]
    return [c for c in summary["conditions"] if c["dose"] == dose]


def _title(condition: dict) -> str:
    return "scans" if condition["kernel"] is None else f"kernel {condition['kernel']}, dose {condition['dose']:g}"


def nps_figure(summary: dict) -> bytes:
    """Radial NPS (HU^2 mm^2, log scale) against cycles/mm, every method, one panel per kernel."""
    plt = _plt()
    conditions = _reported_conditions(summary)
    fig, axes = plt.subplots(1, len(conditions), figsize=(5.2 * len(conditions), 3.8), squeeze=False)
    for axis, condition in zip(axes[0], conditions):
        for i, method in enumerate(condition["methods"]):
            nps = method["nps"]
            axis.semilogy(nps["frequency"], np.maximum(nps["value"], 1e-6), marker=_MARKERS[i % 10], markersize=3,
                          label=f"{method['name']} (f_av {nps['f_av']:.2f})")
        axis.set(title=f"NPS, {_title(condition)}", xlabel="spatial frequency (cycles/mm)", ylabel="NPS (HU² mm²)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return figure_png(fig)


def ttf_figure(summary: dict) -> bytes:
    """TTF of every insert (one panel each) for every method at the reported condition of the first kernel;
    the phantom's analytic TTF dashed where known."""
    plt = _plt()
    methods = _reported_conditions(summary)[0]["methods"]
    inserts = methods[0]["inserts"]
    if not inserts:
        fig, axis = plt.subplots(figsize=(4, 1))
        axis.text(0.5, 0.5, "no inserts: no TTF", ha="center", va="center")
        axis.axis("off")
        return figure_png(fig)
    fig, axes = plt.subplots(1, len(inserts), figsize=(3.6 * len(inserts), 3.4), squeeze=False)
    analytic = summary.get("analytic")
    for j, axis in enumerate(axes[0]):
        for method in methods:
            curve = method["inserts"][j]["ttf"]
            axis.plot(curve["frequency"], curve["value"], label=method["name"], lw=1.2)
        if analytic:
            f = np.linspace(0, max(inserts[j]["ttf"]["frequency"]), 100)
            axis.plot(f, np.exp(-2 * (np.pi * analytic["blur_sigma_mm"] * f) ** 2), "k--", lw=0.8, label="phantom (analytic)")
        name = inserts[j]["name"] or f"insert {j + 1}"
        axis.set(title=f"{name}: {inserts[j]['contrast_hu']:+.0f} HU", xlabel="cycles/mm", ylim=(0, 1.15))
        axis.axhline(0.5, color="grey", lw=0.5)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("TTF")
    axes[0][-1].legend(fontsize=7)
    return figure_png(fig)


def _strength_points(condition: dict) -> list[tuple[float, float]]:
    """(strength, d') of the model strengths of ``condition``, the input at strength 0."""
    points = [(0.0, m["dprime"]) for m in condition["methods"] if m["name"] == "input"]
    points += [(m["strength"], m["dprime"]) for m in condition["methods"] if m.get("strength") is not None]
    return sorted(p for p in points if p[1] is not None)


def dprime_figure(summary: dict) -> bytes | None:
    """d' (NPW) against model strength (the input at strength 0) per dose and kernel, NLM as open markers and
    the full-dose input's d' as a dashed line; None when there is no model strength to plot."""
    conditions = summary.get("conditions") or [{"kernel": None, "dose": None, "methods": summary["methods"]}]
    if not any(m.get("strength") is not None for c in conditions for m in c["methods"]):
        return None
    plt = _plt()
    fig, axis = plt.subplots(figsize=(5.6, 3.8))
    for i, condition in enumerate(conditions):
        points = _strength_points(condition)
        line = axis.plot(*zip(*points), marker=_MARKERS[i % 10], label=_title(condition))[0] if points else None
        nlm = [m["dprime"] for m in condition["methods"] if m["name"] == "nlm" and m["dprime"] is not None]
        if nlm and line is not None:
            axis.plot([1.02], nlm, marker=_MARKERS[i % 10], mfc="none", color=line.get_color(), ls="none")
        if condition["dose"] == 1.0:
            reference = next((m["dprime"] for m in condition["methods"] if m["name"] == "input"), None)
            if reference is not None:
                axis.axhline(reference, ls="--", lw=0.8, color=line.get_color() if line else "k")
    axis.set(xlabel="model strength (0 = input)", ylabel="d' (NPW)", title="detectability against strength "
             "(open: NLM; dashed: full-dose input)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return figure_png(fig)


def summary_figure(summary: dict) -> bytes:
    """The report's main picture in one PNG (NPS, the lowest-contrast insert's TTF, d' against strength)."""
    plt = _plt()
    condition = _reported_conditions(summary)[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    for method in condition["methods"]:
        nps = method["nps"]
        axes[0].semilogy(nps["frequency"], np.maximum(nps["value"], 1e-6), label=method["name"])
        if method["inserts"]:
            j = int(np.argmin([abs(ins["contrast_hu"]) for ins in condition["methods"][0]["inserts"]]))
            axes[1].plot(method["inserts"][j]["ttf"]["frequency"], method["inserts"][j]["ttf"]["value"], label=method["name"])
    if summary.get("analytic") and condition["methods"][0]["inserts"]:
        f = np.asarray(condition["methods"][0]["inserts"][0]["ttf"]["frequency"])
        axes[1].plot(f, np.exp(-2 * (np.pi * summary["analytic"]["blur_sigma_mm"] * f) ** 2), "k--", lw=0.8,
                     label="phantom (analytic)")
    axes[0].set(title=f"NPS, {_title(condition)}", xlabel="cycles/mm", ylabel="HU² mm²")
    axes[1].set(title="TTF of the lowest-contrast insert", xlabel="cycles/mm", ylim=(0, 1.15))
    for axis in axes[:2]:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    conditions = summary.get("conditions") or [condition]
    for condition in conditions:
        points = _strength_points(condition)
        if points:
            axes[2].plot(*zip(*points), marker="o", label=_title(condition))
    axes[2].set(title="d' (NPW) against strength", xlabel="model strength (0 = input)")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    return figure_png(fig)


def _number(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def numbers_table(methods: list[dict]) -> str:
    """One row per method: noise, its change, f_av, f_peak, TTF50/TTF10 per insert, d' NPW and NPWE."""
    inserts = methods[0]["inserts"]
    headers = ["method", "noise (HU)", "noise change", "f_av (cycles/mm)", "f_av change", "f_peak (cycles/mm)"]
    headers += [f"TTF50 ± s.e. / TTF10 {ins['name'] or j + 1} ({ins['contrast_hu']:+.0f} HU)"
                for j, ins in enumerate(inserts)]
    headers += ["d' NPW", "d' NPWE"]
    rows = []
    for m in methods:
        rows.append([m["name"], f"{m['noise_hu']:.2f}", _change(m["noise_change_percent"]), f"{m['nps']['f_av']:.3f}",
                     _change(m["nps"]["f_av_change_percent"]), f"{m['nps']['f_peak']:.3f}",
                     *[f"{_number(i['ttf50'])} ± {_number(i.get('ttf50_se'), 1)} / {_number(i['ttf10'])} "
                       f"({_change(i['ttf50_change_percent'])})" for i in m["inserts"]],
                     _number(m["dprime"]), _number(m["dprime_npwe"])])
    return table(headers, rows)


def crops(examples: Mapping[str, np.ndarray], fraction: float = 0.7) -> str:
    """The central ``fraction`` of each method's first image, at the soft-tissue window, side by side."""
    figures = []
    for name, image in examples.items():
        rows, cols = image.shape
        r0, c0 = int(rows * (1 - fraction) / 2), int(cols * (1 - fraction) / 2)
        crop = image[r0 : rows - r0, c0 : cols - c0]
        figures.append(f"<figure>{img(ct_image_png(crop), name)}<figcaption>{escape(name)}</figcaption></figure>")
    return "\n".join(figures)


def render_report(summary: dict, examples: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> str:
    """The HTML of ``report.html`` for the ``iq.json`` dict ``summary`` and the example images of
    :attr:`~ctdenoise.iq.protocol.IQRun.examples`."""
    parts = [f"<p class='note'>ctdenoise {escape(summary.get('ctdenoise_version'))}, {escape(summary['mode'])}. "
             "Measured as AAPM TG-233 describes: noise and NPS from noise-only images (each scan minus the ensemble "
             "mean) in uniform ROIs, TTF of each circular insert from the ensemble mean, d' of a non-prewhitening "
             "observer (NPWE: with an eye filter) for the task below. Changes are relative to the input.</p>"]
    settings = summary["settings"]
    parts.append(table(["setting", "value"], [[k, v] for k, v in settings.items() if not isinstance(v, dict)]
                       + [[k, ", ".join(f"{a}={b}" for a, b in v.items())] for k, v in settings.items() if isinstance(v, dict)
                          and k != "phantom"], text_columns=2))
    for condition in summary.get("conditions") or [{"kernel": None, "dose": None, "methods": summary["methods"]}]:
        parts.append(f"<h2>Numbers: {escape(_title(condition))}</h2>")
        parts.append(numbers_table(condition["methods"]))
    if summary.get("analytic"):
        a = summary["analytic"]
        parts.append(f"<p class='note'>The phantom's own resolution (a Gaussian blur of {a['blur_sigma_mm']} mm): "
                     f"TTF50 {a['ttf50']} and TTF10 {a['ttf10']} cycles/mm, what the input should measure.</p>")
    if summary.get("dose_reduction"):
        parts.append("<h2>Dose-reduction potential</h2><p class='note'>The lowest simulated dose at which a method's "
                     "d' reaches the d' of the input at full dose; interpolated: where d'² (linear in dose) crosses it."
                     "</p>")
        parts.append(table(["kernel", "method", "full-dose input d'", "lowest dose", "interpolated dose", "reduction"],
                           [[r["kernel"], r["method"], r["reference_dprime"], _number(r["lowest_dose"]),
                             _number(r["interpolated_dose"]), _change(r["reduction_percent"])]
                            for r in summary["dose_reduction"]], text_columns=2))
    parts.append("<h2>Noise power spectra</h2>" + img(nps_figure(summary), "NPS curves"))
    parts.append("<h2>Task transfer functions</h2>" + img(ttf_figure(summary), "TTF curves"))
    dprime = dprime_figure(summary)
    if dprime is not None:
        parts.append("<h2>Detectability against strength</h2>" + img(dprime, "d' against strength"))
    for label, shown in (examples or {}).items():
        parts.append(f"<h2>Images: {escape(label)} (soft-tissue window, centre 40, width 400 HU)</h2>")
        parts.append(crops(shown))
    return page("ctdenoise image quality", "\n".join(parts))


def write_outputs(run, out_dir) -> tuple:
    """Write ``OUT/iq.json`` (the summary) and ``OUT/report.html`` of an :class:`~ctdenoise.iq.protocol.IQRun`,
    each atomically; returns their paths. OutputError naming the file when it cannot be written."""
    import json
    from functools import partial
    from pathlib import Path

    from ctdenoise.io.atomic import atomic_write_file, output_os_error

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_os_error(out, exc, "cannot create the output folder") from None
    written = []
    for name, text in (("iq.json", json.dumps(run.summary, indent=1, allow_nan=False)),
                       ("report.html", render_report(run.summary, run.examples))):
        path = out / name
        try:
            atomic_write_file(path, partial(Path.write_text, data=text, encoding="utf-8"))
        except OSError as exc:
            raise output_os_error(path, exc, "cannot write") from None
        written.append(path)
    return tuple(written)
