"""The whole image-quality protocol: named methods measured on repeated scans, as ``iq.json`` holds it.

:func:`measure_methods` measures each method on one set of repeated scans (noise, NPS, TTF per insert, d');
:func:`run_protocol` scans the :class:`~ctdenoise.iq.phantom.DigitalPhantom` through
:func:`ctdenoise.simulate.simulate_low_dose` at several doses and kernels and adds the dose-reduction potential;
:func:`run_scan_protocol` measures a physicist's own repeated scans. A method is any callable that maps a HU
stack (n, rows, cols) to a HU stack of the same shape; the unprocessed input is always measured first, as
``"input"``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ctdenoise import __version__
from ctdenoise.errors import ConfigError
from ctdenoise.iq.detectability import DiskTask, EyeFilter, dose_reduction, dprime_npw, dprime_npwe
from ctdenoise.iq.layout import Layout
from ctdenoise.iq.noise import as_spacing, measure_noise, noise_only_images, nps_2d, radial_nps, roi_stack
from ctdenoise.iq.phantom import DigitalPhantom
from ctdenoise.iq.ttf import ttf_circular_insert

log = logging.getLogger("ctdenoise.iq")

Denoiser = Callable[[np.ndarray], np.ndarray]
INPUT = "input"


@dataclass(frozen=True)
class IQMethod:
    """A named method: ``denoise`` maps a HU stack (n, rows, cols) to one of the same shape; ``strength`` is
    recorded for a model run at a strength (d' against strength in the report)."""

    name: str
    denoise: Denoiser
    strength: float | None = None
    description: str = ""


def as_methods(methods: Sequence[IQMethod] | Mapping[str, Denoiser]) -> list[IQMethod]:
    """``methods`` as a list of :class:`IQMethod` with the unprocessed input first (added when missing)."""
    listed = [IQMethod(n, f) for n, f in methods.items()] if isinstance(methods, Mapping) else list(methods)
    names = [m.name for m in listed]
    if len(set(names)) != len(names):
        raise ConfigError("methods", f"method names must be unique, got {names}")
    if INPUT not in names:
        listed.insert(0, IQMethod(INPUT, lambda hu: np.asarray(hu, dtype=np.float32), None, "the scans themselves"))
    return listed


def _percent(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return round(100.0 * (value - reference) / reference, 2)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def measure_methods(
    realisations: np.ndarray,
    spacing_mm: float | Sequence[float],
    layout: Layout,
    methods: Sequence[IQMethod] | Mapping[str, Denoiser],
    *,
    task: DiskTask = DiskTask(),
    eye: EyeFilter = EyeFilter(),
    keep_example: bool = False,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Measure every method on the repeated scans ``realisations`` (n >= 2, rows, cols) in HU.

    Each method's output is measured as TG-233 does for a scanner: noise and the NPS from its noise-only images
    (:func:`~ctdenoise.iq.noise.noise_only_images`) in ``layout.rois``, the TTF of each of ``layout.inserts`` from
    its ensemble mean (with the bootstrap standard error of TTF50, :func:`ttf50_spread`), and d' (NPW and NPWE) of
    ``task`` from the NPS and the TTF of the insert whose measured
    contrast in the input is closest to the task's (None without inserts). Changes of noise, ``f_av`` and TTF50
    are given in percent of the input's. Returns the method records (``iq.json``'s ``methods``) and, with
    ``keep_example``, the first output image of each method by name.
    """
    stack = np.asarray(realisations, dtype=np.float32)
    spacing = as_spacing(spacing_mm)
    if not layout.rois:
        raise ConfigError("layout", "needs at least one uniform ROI for the noise and the NPS")
    records: list[dict] = []
    examples: dict[str, np.ndarray] = {}
    task_insert: int | None = None
    for method in as_methods(methods):
        output = np.asarray(method.denoise(stack), dtype=np.float64)
        if output.shape != stack.shape:
            raise ConfigError("methods", f"{method.name} returned shape {output.shape} for input {stack.shape}")
        if keep_example:
            examples[method.name] = output[0].astype(np.float32)
        noise = noise_only_images(output)
        nps = nps_2d(roi_stack(noise, layout.rois), spacing)
        radial = radial_nps(nps)
        mean = output.mean(axis=0)
        ttfs = [ttf_circular_insert(mean, (i.row, i.col), i.radius_px, spacing) for i in layout.inserts]
        spreads = [ttf50_spread(output, insert, spacing) for insert in layout.inserts]
        if task_insert is None and ttfs:
            task_insert = int(np.argmin([abs(t.contrast_hu - task.contrast_hu) for t in ttfs]))
        task_ttf = ttfs[task_insert] if task_insert is not None else None  # every method has the same inserts
        record: dict[str, Any] = {
            "name": method.name,
            "description": method.description,
            "strength": method.strength,
            "noise_hu": round(measure_noise(noise, layout.rois), 3),
            "nps": radial.to_dict(),
            "inserts": [
                {"name": i.name, "row": round(i.row, 2), "col": round(i.col, 2), "radius_px": round(i.radius_px, 2),
                 "contrast_hu": round(t.contrast_hu, 2), "ttf50": _rounded(t.ttf50), "ttf10": _rounded(t.ttf10),
                 "ttf50_se": _rounded(se), "ttf": t.to_dict()}
                for i, t, se in zip(layout.inserts, ttfs, spreads)
            ],
            "dprime": _rounded(dprime_npw(nps, task_ttf, task), 3) if task_ttf is not None else None,
            "dprime_npwe": _rounded(dprime_npwe(nps, task_ttf, task, eye), 3) if task_ttf is not None else None,
            "dprime_ttf_insert": layout.inserts[task_insert].name or task_insert if task_insert is not None else None,
        }
        reference = records[0] if records else record
        record["noise_change_percent"] = _percent(record["noise_hu"], reference["noise_hu"])
        record["nps"]["f_av_change_percent"] = _percent(record["nps"]["f_av"], reference["nps"]["f_av"])
        for mine, theirs in zip(record["inserts"], reference["inserts"]):
            mine["ttf50_change_percent"] = _percent(mine["ttf50"], theirs["ttf50"])
        records.append(record)
        log.info("%s: noise %.2f HU, f_av %.3f cycles/mm, d' %s", method.name, record["noise_hu"],
                 record["nps"]["f_av"], record["dprime"])
    return records, examples


#: Bootstrap resamples of the realisations behind each TTF50's standard error.
BOOTSTRAP_RESAMPLES = 20


def ttf50_spread(realisations: np.ndarray, insert, spacing_mm: tuple[float, float]) -> float | None:
    """The standard error of an insert's TTF50: the standard deviation of TTF50 over :data:`BOOTSTRAP_RESAMPLES`
    bootstrap resamples of the realisations (drawn with replacement, seed 0, so a run is reproducible; Efron and
    Tibshirani 1993). None when fewer than half the resamples reach 0.5 below Nyquist."""
    rng = np.random.default_rng(0)
    n = len(realisations)
    values = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        mean = realisations[rng.integers(0, n, n)].mean(axis=0)
        ttf50 = ttf_circular_insert(mean, (insert.row, insert.col), insert.radius_px, spacing_mm).ttf50
        if ttf50 is not None:
            values.append(ttf50)
    return float(np.std(values, ddof=1)) if len(values) >= BOOTSTRAP_RESAMPLES // 2 else None


@dataclass(frozen=True)
class PhantomProtocol:
    """Settings of the digital-phantom protocol: the ``phantom``, the simulated ``doses`` (fractions of full
    dose; 1.0 is always added, it is the reference of the dose-reduction potential), the reconstruction
    ``kernels`` (:data:`ctdenoise.simulate.KERNELS` names), ``realisations`` repeated scans per dose and kernel,
    ``seed``, the d' ``task``, and ``report_dose``, the dose whose measurements are ``iq.json``'s ``methods``."""

    phantom: DigitalPhantom = field(default_factory=DigitalPhantom)
    doses: tuple[float, ...] = (0.25, 0.5, 1.0)
    kernels: tuple[str, ...] = ("standard",)
    realisations: int = 12
    seed: int = 0
    task: DiskTask = field(default_factory=DiskTask)
    report_dose: float = 0.25

    def all_doses(self) -> tuple[float, ...]:
        return tuple(sorted(set(self.doses) | {1.0, self.report_dose}))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["doses"] = list(self.all_doses())
        values["kernels"] = list(self.kernels)
        return values


@dataclass
class IQRun:
    """What a protocol run found: ``summary`` is the ``iq.json`` dict; ``examples`` holds, per condition label
    (``"<kernel>, dose <d>"`` or ``"scans"``), the first output image of each method (for the report's crops)."""

    summary: dict
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def condition_label(kernel: str, dose: float) -> str:
    return f"{kernel}, dose {dose:g}"


def _dose_reductions(conditions: list[dict], kernel: str) -> list[dict]:
    """Per method, where its d' reaches the input's at full dose (for ``kernel``)."""
    mine = [c for c in conditions if c["kernel"] == kernel]
    reference = next(m["dprime"] for c in mine if c["dose"] == 1.0 for m in c["methods"] if m["name"] == INPUT)
    if reference is None:
        return []
    out = []
    for name in [m["name"] for m in mine[0]["methods"]]:
        by_dose = {c["dose"]: m["dprime"] for c in mine for m in c["methods"] if m["name"] == name}
        out.append({"kernel": kernel, "method": name, **dose_reduction(by_dose, reference).to_dict()})
    return out


def scan_phantom(protocol: PhantomProtocol, kernel: str, dose: float, *, seed: Sequence[int],
                 image: np.ndarray | None = None) -> np.ndarray:
    """``protocol.realisations`` simulated scans (n, rows, cols) in HU of ``protocol.phantom`` at ``dose`` with
    ``kernel``: :func:`ctdenoise.simulate.simulate_low_dose` with ``input_has_noise=False`` (the whole dose-k noise
    added to the noiseless phantom, whose own resolution is the known Gaussian), drawn from ``seed``
    (:func:`run_protocol` uses ``[protocol.seed, kernel index, dose index]``). ``image``: the phantom's image
    when the caller already has it."""
    from ctdenoise.simulate import simulate_low_dose

    phantom = protocol.phantom
    image = phantom.image() if image is None else image
    log.info("scanning the phantom %d times: kernel %s, dose %g", protocol.realisations, kernel, dose)
    return simulate_low_dose(np.repeat(image[None], protocol.realisations, axis=0), phantom.pixel_mm,
                             dose_fraction=dose, kernel=kernel, input_has_noise=False, seed=list(seed))


def run_protocol(
    methods: Sequence[IQMethod] | Mapping[str, Denoiser],
    protocol: PhantomProtocol = PhantomProtocol(),
) -> IQRun:
    """Scan the digital phantom ``protocol.realisations`` times at every dose and kernel of ``protocol``
    (:func:`ctdenoise.simulate.simulate_low_dose` with ``input_has_noise=False``: the whole dose-k noise is
    added to the noiseless phantom, whose own resolution is the known Gaussian), measure every method on each
    set (:func:`measure_methods`) and find each method's dose-reduction potential per kernel.

    Returns an :class:`IQRun` whose ``summary`` is the ``iq.json`` dict: ``settings``, ``layout``, ``methods``
    (at ``report_dose`` and the first kernel), ``conditions`` (every kernel and dose), ``dose_reduction`` and
    ``analytic`` (the phantom's true TTF50/TTF10).
    """
    from ctdenoise.recon_kernels import get_kernel

    if protocol.realisations < 2:
        raise ConfigError("realisations", f"needs at least 2 repeated scans, got {protocol.realisations}")
    for kernel in protocol.kernels:
        get_kernel(kernel)  # ConfigError for an unknown name before any work
    listed = as_methods(methods)
    phantom = protocol.phantom
    layout = phantom.layout()
    image = phantom.image()
    conditions: list[dict] = []
    examples: dict[str, dict[str, np.ndarray]] = {}
    for k, kernel in enumerate(protocol.kernels):
        for d, dose in enumerate(protocol.all_doses()):
            scans = scan_phantom(protocol, kernel, dose, seed=[protocol.seed, k, d], image=image)
            records, shown = measure_methods(scans, phantom.pixel_mm, layout, listed, task=protocol.task,
                                             keep_example=dose == protocol.report_dose)
            conditions.append({"kernel": kernel, "dose": dose, "methods": records})
            if shown:
                examples[condition_label(kernel, dose)] = shown
    first = next(c for c in conditions if c["dose"] == protocol.report_dose)
    summary = {
        "ctdenoise_version": __version__,
        "mode": "digital phantom",
        "settings": {**protocol.to_dict(), "pixel_mm": phantom.pixel_mm,
                     "roi_size_px": layout.rois[0].size, "n_rois": len(layout.rois)},
        "layout": layout.to_dict(),
        "analytic": {"ttf50": round(phantom.analytic_ttf_at(0.5), 4), "ttf10": round(phantom.analytic_ttf_at(0.1), 4),
                     "blur_sigma_mm": phantom.blur_sigma_mm},
        "condition": {"kernel": first["kernel"], "dose": first["dose"]},
        "methods": first["methods"],
        "conditions": conditions,
        "dose_reduction": [row for kernel in protocol.kernels for row in _dose_reductions(conditions, kernel)],
    }
    return IQRun(summary, examples)


def run_scan_protocol(
    realisations: np.ndarray,
    spacing_mm: float | Sequence[float],
    layout: Layout,
    methods: Sequence[IQMethod] | Mapping[str, Denoiser],
    *,
    task: DiskTask = DiskTask(),
    sources: Sequence[str] = (),
) -> IQRun:
    """Measure ``methods`` on a physicist's repeated scans (n, rows, cols) of one phantom section with the
    inserts and ROIs of ``layout`` (:func:`~ctdenoise.iq.layout.find_layout`); ``sources`` names the series.
    The ``summary`` is the ``iq.json`` dict (``settings``, ``layout``, ``methods``)."""
    spacing = as_spacing(spacing_mm)
    records, shown = measure_methods(realisations, spacing, layout, methods, task=task, keep_example=True)
    summary = {
        "ctdenoise_version": __version__,
        "mode": "scans",
        "settings": {"series": list(sources), "realisations": int(len(realisations)), "spacing_mm": list(spacing),
                     "task": asdict(task), "roi_size_px": layout.rois[0].size, "n_rois": len(layout.rois)},
        "layout": layout.to_dict(),
        "methods": records,
    }
    return IQRun(summary, {"scans": shown})
