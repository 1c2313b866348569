"""Reconstruction kernels and bowtie filters: what sets the texture and the position dependence of CT noise.

Numbers only (NumPy, no torch): :mod:`ctdenoise.simulate` uses them to make noise, the command line lists them,
and the image-quality tools compare measured noise power spectra with :meth:`ReconKernel.nps_shape`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from ctdenoise.errors import ConfigError

#: Linear attenuation of water at about 70 keV effective energy, per mm (docs/simulation.md).
MU_WATER_PER_MM: float = 0.0192

Bowtie = Literal["none", "body", "head"]


@dataclass(frozen=True)
class ReconKernel:
    """A filtered back-projection kernel: the ramp ``|f|`` times an apodisation window.

    ``window`` is ``none`` (Ram-Lak), ``hann`` (``0.5 (1 + cos(pi f / fc))``), ``cosine`` (``cos(pi f / 2 fc)``)
    or ``shepp-logan`` (``sinc(f / 2 fc)``), each zero above its cutoff ``fc``. ``cutoff_per_mm`` fixes ``fc`` in
    cycles/mm, so the noise texture is the same at every pixel size (as a scanner's named kernel is); ``None``
    puts the cutoff at the pixel grid's Nyquist frequency, so the texture scales with the pixel. Frequencies
    above the grid's Nyquist frequency are never reconstructed.

    For parallel-beam FBP the noise power spectrum of a stationary region is ``NPS(f) ~ |f| W(f)^2``
    (Kak & Slaney ch. 5; Hanson 1979): :meth:`nps_shape` gives that curve, its peak and mean frequency.
    """

    name: str
    window: Literal["none", "hann", "cosine", "shepp-logan"]
    cutoff_per_mm: float | None
    description: str

    def cutoff(self, pixel_spacing_mm: float) -> float:
        """The window's cutoff in cycles/mm on a grid of ``pixel_spacing_mm`` (at most its Nyquist frequency
        for grid-relative kernels; mm kernels may cut off above Nyquist, where the grid truncates them)."""
        return 0.5 / pixel_spacing_mm if self.cutoff_per_mm is None else self.cutoff_per_mm

    def window_at(self, frequency_per_mm: np.ndarray, pixel_spacing_mm: float) -> np.ndarray:
        """The apodisation window at ``frequency_per_mm`` (cycles/mm), zero above the cutoff and above Nyquist."""
        f = np.abs(np.asarray(frequency_per_mm, dtype=np.float64))
        x = f / self.cutoff(pixel_spacing_mm)
        if self.window == "hann":
            w = 0.5 * (1.0 + np.cos(np.pi * np.minimum(x, 1.0)))
        elif self.window == "cosine":
            w = np.cos(0.5 * np.pi * np.minimum(x, 1.0))
        elif self.window == "shepp-logan":
            w = np.sinc(0.5 * x)
        else:
            w = np.ones_like(x)
        nyquist = 0.5 / pixel_spacing_mm
        return np.where((x <= 1.0) & (f <= nyquist + 1e-12), w, 0.0)

    def nps_shape(self, pixel_spacing_mm: float, samples: int = 512) -> tuple[np.ndarray, np.ndarray, float, float]:
        """The radial NPS shape ``|f| W(f)^2`` (peak 1) on [0, Nyquist]: (frequency cycles/mm, nps, f_peak, f_av).

        ``f_av = sum f NPS(f) / sum NPS(f)`` over the radial profile, as TG-233 defines the mean frequency.
        """
        frequency = np.linspace(0.0, 0.5 / pixel_spacing_mm, samples)
        nps = frequency * self.window_at(frequency, pixel_spacing_mm) ** 2
        nps = nps / nps.max()
        f_peak = float(frequency[int(np.argmax(nps))])
        f_av = float(np.sum(frequency * nps) / np.sum(nps))
        return frequency, nps, f_peak, f_av

    def scaled(self, factor: float, pixel_spacing_mm: float) -> ReconKernel:
        """This kernel with its cutoff on a grid of ``pixel_spacing_mm`` multiplied by ``factor``, fixed in cycles/mm.

        ``factor < 1`` makes the noise grain coarser in pixels: ``smooth`` scaled by 0.45 on a 0.96 mm grid has
        the texture, in pixels, that ``smooth`` has on a 0.43 mm grid. Training uses this to cover the grain sizes
        of every pixel spacing with the few pixel spacings of its slices.
        """
        if not factor > 0:
            raise ConfigError("kernel_cutoff_scale", f"must be > 0, got {factor!r}")
        cutoff = self.cutoff(pixel_spacing_mm) * factor
        return ReconKernel(f"{self.name} x{factor:.2f}", self.window, cutoff, f"{self.description}, cutoff x{factor:.2f}")


#: The reconstruction kernels :func:`simulate_low_dose` knows, by name. ``smooth``, ``standard`` and ``sharp``
#: have cutoffs in cycles/mm chosen so that their NPS peaks (about 0.17, 0.31 and 0.55 cycles/mm) span the
#: soft-tissue, standard and sharp kernels of clinical scanners; ``ramp``, ``shepp-logan``, ``cosine`` and
#: ``hann`` are the textbook filters with the cutoff at the grid's Nyquist frequency (their texture follows
#: the pixel size). ``hann`` was the only apodised filter before kernels had names (the default of ctdenoise
#: 0.1, and the noise every model up to v5 was trained on).
KERNELS: dict[str, ReconKernel] = {
    kernel.name: kernel
    for kernel in (
        ReconKernel("smooth", "hann", 0.55, "soft-tissue kernel (B20f/B30f-like): NPS peak ~0.17 cycles/mm"),
        ReconKernel("standard", "hann", 1.0, "standard body kernel (B40f/STANDARD-like): NPS peak ~0.31 cycles/mm"),
        ReconKernel("sharp", "shepp-logan", 0.75, "sharp kernel (B60f/LUNG-like): NPS peak ~0.55 cycles/mm"),
        ReconKernel("ramp", "none", None, "Ram-Lak, unapodised: NPS rises to the Nyquist frequency"),
        ReconKernel("shepp-logan", "shepp-logan", None, "Shepp-Logan to Nyquist"),
        ReconKernel("cosine", "cosine", None, "cosine window to Nyquist"),
        ReconKernel("hann", "hann", None, "Hann window to Nyquist: NPS peak at 0.31 x Nyquist"),
    )
}


def get_kernel(kernel: str | ReconKernel) -> ReconKernel:
    """The :class:`ReconKernel` named ``kernel`` (or ``kernel`` itself); a ConfigError lists the known names."""
    if isinstance(kernel, ReconKernel):
        return kernel
    if kernel not in KERNELS:
        raise ConfigError("kernel", f"unknown reconstruction kernel {kernel!r}; known: {', '.join(KERNELS)}")
    return KERNELS[kernel]


#: Bowtie filters: (radius in mm of the water cylinder the filter compensates, lowest transmission at the edge).
#: The filter's water-equivalent thickness at fan position ``t`` is ``2R - 2 sqrt(R^2 - t^2)`` (so the flux
#: behind a centred water cylinder of radius R is uniform), capped where the transmission reaches the floor.
BOWTIES: dict[str, tuple[float, float]] = {"body": (175.0, 0.08), "head": (110.0, 0.08)}
#: Every name a ``bowtie`` argument accepts: no filter, or one of :data:`BOWTIES`.
BOWTIE_NAMES: tuple[str, ...] = ("none", *BOWTIES)


def check_bowtie(bowtie: str) -> Bowtie:
    """``bowtie`` itself if it is one of :data:`BOWTIE_NAMES`; a ConfigError listing them otherwise."""
    if bowtie not in BOWTIE_NAMES:
        raise ConfigError("bowtie", f"unknown bowtie {bowtie!r}; known: {', '.join(BOWTIE_NAMES)}")
    return cast(Bowtie, bowtie)


def bowtie_transmission(bowtie: Bowtie, offsets_mm: np.ndarray, mu_water_per_mm: float = MU_WATER_PER_MM) -> np.ndarray:
    """Fraction of the central flux that reaches the patient at ray offsets ``offsets_mm`` from the isocentre.

    ``none`` is 1 everywhere. A shaped (bowtie) filter lowers the flux towards the edge of the fan, so noise
    there rises while the dose to the periphery falls (Hsieh, "Computed Tomography", ch. 2).
    """
    offsets = np.abs(np.asarray(offsets_mm, dtype=np.float64))
    if check_bowtie(bowtie) == "none":
        return np.ones_like(offsets)
    radius, floor = BOWTIES[bowtie]
    water_mm = 2.0 * radius - 2.0 * np.sqrt(np.clip(radius**2 - offsets**2, 0.0, None))
    return np.maximum(np.exp(-mu_water_per_mm * water_mm), floor)
