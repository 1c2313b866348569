"""Detectability of a disk by model observers from the NPS and the TTF, after AAPM TG-233 section 6.

The non-prewhitening (NPW) observer (AAPM Report 233 eq. 6.2; Richard and Samei, Med. Phys. 2012; Chen et al.,
Med. Phys. 41, 2014):

``d'^2 = [ sum |W|^2 TTF^2 ]^2 / sum |W|^2 TTF^2 NPS``  (sums over the 2-D frequency grid, times the cell area),

``W`` the Fourier transform of the task: a disk of diameter ``d`` and contrast ``C`` HU,
``W(f) = C pi r^2 2 J1(2 pi r f) / (2 pi r f)``. The NPW observer with an eye filter (NPWE; Burgess 1994,
Eckstein et al. 1998) weights the signal by the visual response ``E(f)``:

``d'^2 = [ sum |W|^2 TTF^2 E^2 ]^2 / sum |W|^2 TTF^2 NPS E^4``,

``E(rho) = rho^n exp(-c rho^2)`` with ``rho`` in cycles/degree of visual angle (:class:`EyeFilter`).
The **dose-reduction potential** of a method (:func:`dose_reduction`) is the lowest dose at which its d' reaches
the d' of the unprocessed full-dose input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import j1

from ctdenoise.errors import ConfigError
from ctdenoise.iq.noise import NPS2D
from ctdenoise.iq.ttf import TTF


@dataclass(frozen=True)
class DiskTask:
    """Detect a disk of ``diameter_mm`` and ``contrast_hu`` in a uniform background."""

    diameter_mm: float = 5.0
    contrast_hu: float = 35.0

    def __post_init__(self) -> None:
        if not self.diameter_mm > 0 or not np.isfinite(self.contrast_hu) or self.contrast_hu == 0:
            raise ConfigError("task", f"needs a positive diameter and a non-zero contrast, got {self}")

    def spectrum(self, radial_frequency: np.ndarray) -> np.ndarray:
        """``|W(f)|`` in HU mm^2 at ``radial_frequency`` (cycles/mm)."""
        r = self.diameter_mm / 2.0
        x = 2.0 * np.pi * r * np.asarray(radial_frequency, dtype=np.float64)
        airy = np.where(x > 1e-12, 2.0 * j1(np.maximum(x, 1e-12)) / np.maximum(x, 1e-12), 1.0)
        return np.abs(self.contrast_hu * np.pi * r * r * airy)


@dataclass(frozen=True)
class EyeFilter:
    """The visual response ``E(rho) = rho^exponent exp(-c rho^2)``, ``rho`` in cycles/degree, ``c`` chosen so that
    it peaks at ``peak_cycles_per_degree`` (``c = exponent / (2 peak^2)``). An image frequency ``f`` (cycles/mm)
    is seen at ``rho = f * viewing_distance_mm * pi / 180 / magnification``, ``magnification`` the displayed size
    of one image mm. Defaults: exponent 1.3 and a peak at 4 cycles/degree (Burgess 1994; Eckstein 1998, as used
    by Richard and Samei 2012), 500 mm viewing distance, displayed at 1.5x (a 230 mm field on a 350 mm wide image)."""

    exponent: float = 1.3
    peak_cycles_per_degree: float = 4.0
    viewing_distance_mm: float = 500.0
    magnification: float = 1.5

    def __call__(self, radial_frequency: np.ndarray) -> np.ndarray:
        rho = np.asarray(radial_frequency, dtype=np.float64) * self.viewing_distance_mm * np.pi / 180.0 / self.magnification
        c = self.exponent / (2.0 * self.peak_cycles_per_degree**2)
        return rho**self.exponent * np.exp(-c * rho * rho)


def _template(nps: NPS2D, ttf: TTF, task: DiskTask) -> tuple[np.ndarray, np.ndarray, float]:
    radial = nps.radial_frequency()
    signal = (task.spectrum(radial) * ttf.at(radial)) ** 2
    return radial, signal, nps.df[0] * nps.df[1]


def dprime_npw(nps: NPS2D, ttf: TTF, task: DiskTask) -> float:
    """d' of the non-prewhitening observer for ``task`` with noise ``nps`` and resolution ``ttf`` (module docstring).

    ``nps`` fixes the frequency grid; the TTF is interpolated radially onto it. Doubling the contrast doubles d';
    for white noise of standard deviation ``sigma`` and a TTF of 1 it is the matched filter's
    ``d'^2 = C^2 pi r^2 / (sigma^2 dx dy)`` (the disk's energy over the noise variance per pixel area), less the
    small part of the disk's energy above the Nyquist frequency.
    """
    _, signal, cell = _template(nps, ttf, task)
    denominator = float(np.sum(signal * nps.values))
    return float(np.sum(signal) * np.sqrt(cell / denominator)) if denominator > 0 else float("inf")


def dprime_npwe(nps: NPS2D, ttf: TTF, task: DiskTask, eye: EyeFilter = EyeFilter()) -> float:
    """d' of the non-prewhitening observer with eye filter ``eye`` (module docstring; no internal noise)."""
    radial, signal, cell = _template(nps, ttf, task)
    e2 = eye(radial) ** 2
    denominator = float(np.sum(signal * nps.values * e2 * e2))
    return float(np.sum(signal * e2) * np.sqrt(cell / denominator)) if denominator > 0 else float("inf")


@dataclass(frozen=True)
class DoseReduction:
    """Where a method's d' reaches ``reference`` (the full-dose input's): ``lowest_dose`` the lowest simulated
    dose at which it does (None: at none), ``interpolated_dose`` the dose at which ``d'^2`` (linear in dose
    for quantum noise) crosses ``reference^2`` between the simulated doses (None outside their range), and
    ``reduction_percent`` = ``100 (1 - interpolated_dose)`` when that exists."""

    reference: float
    lowest_dose: float | None
    interpolated_dose: float | None

    @property
    def reduction_percent(self) -> float | None:
        return None if self.interpolated_dose is None else 100.0 * (1.0 - self.interpolated_dose)

    def to_dict(self) -> dict:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {"reference_dprime": rounded(self.reference), "lowest_dose": self.lowest_dose,
                "interpolated_dose": rounded(self.interpolated_dose), "reduction_percent": rounded(self.reduction_percent)}


def dose_reduction(dprime_by_dose: Mapping[float, float], reference: float) -> DoseReduction:
    """The dose-reduction potential of a method from its d' at several simulated doses (``{dose: d'}``)
    against ``reference``, the d' of the unprocessed input at full dose (TG-233 section 6.4)."""
    if not dprime_by_dose:
        raise ConfigError("doses", "the dose-reduction potential needs the d' of at least one dose")
    doses = sorted(dprime_by_dose)
    values = [dprime_by_dose[d] for d in doses]
    reached = [d for d, v in zip(doses, values) if v >= reference]
    interpolated = None
    for (d0, v0), (d1, v1) in zip(zip(doses, values), zip(doses[1:], values[1:])):
        if v0 < reference <= v1:
            interpolated = d0 + (reference**2 - v0**2) * (d1 - d0) / (v1**2 - v0**2)
            break
    return DoseReduction(reference, min(reached) if reached else None, interpolated)
