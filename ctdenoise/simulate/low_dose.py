"""Physics-based low dose after Zeng et al. 2015 (docs/simulation.md): HU -> attenuation, parallel-beam
projection, Poisson counts at ``k * I0`` plus Gaussian electronic noise, log, filtered back-projection of the
noise, back to HU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ctdenoise.errors import ConfigError, InputError
from ctdenoise.intensity import HU_MIN
from ctdenoise.recon_kernels import (
    MU_WATER_PER_MM,
    Bowtie,
    ReconKernel,
    bowtie_transmission,
    check_bowtie,
    get_kernel,
)
from ctdenoise.simulate.checks import check_positive
from ctdenoise.simulate.projector import get_projector

#: Incident photons per ray (one detector bin of one view) at full dose.
DEFAULT_I0: float = 1e5
#: Variance of the electronic (detector read-out) noise, in photon counts squared.
DEFAULT_ELECTRONIC_NOISE_VAR: float = 10.0
#: Views over 180 degrees of the parallel-beam geometry.
DEFAULT_N_VIEWS: int = 720
#: Counts below this are replaced by it before the log (photon starvation).
MIN_COUNTS: float = 1.0


def _as_spacing(pixel_spacing_mm: float | tuple[float, float]) -> float:
    """One isotropic in-plane spacing in mm, or a ConfigError naming the problem."""
    values = np.atleast_1d(np.asarray(pixel_spacing_mm, dtype=np.float64)).ravel()
    if values.size not in (1, 2) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError("pixel_spacing_mm", f"needs one or two positive numbers, got {pixel_spacing_mm!r}")
    if values.size == 2 and abs(values[0] - values[1]) > 1e-3 * max(values):
        raise ConfigError(
            "pixel_spacing_mm",
            f"the parallel-beam simulation needs square pixels, got {values[0]} x {values[1]} mm;"
            " resample first",
        )
    return float(values[0])



def simulate_low_dose(
    hu: np.ndarray,
    pixel_spacing_mm: float | tuple[float, float],
    *,
    dose_fraction: float = 0.25,
    i0: float = DEFAULT_I0,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    n_views: int = DEFAULT_N_VIEWS,
    kernel: str | ReconKernel = "hann",
    bowtie: str = "none",
    slices_averaged: int = 1,
    input_has_noise: bool = True,
    seed: int | Sequence[int] | np.random.Generator | None = None,
    mu_water_per_mm: float = MU_WATER_PER_MM,
) -> np.ndarray:
    """Simulate a reduced-dose scan of a normal-dose HU slice or stack (Zeng et al. 2015).

    For each slice: ``mu = mu_water * (1 + HU / 1000)`` (clipped at 0), parallel-beam line
    integrals ``p`` over ``n_views`` views in 180 degrees (detector bins one pixel wide), counts
    ``N = Poisson(k * I0 * exp(-p)) + Normal(0, electronic_noise_var)``, ``p_ld = -ln(max(N, 1) / (k * I0))``,
    and filtered back-projection of the noise ``p_ld - p``, converted to HU and **added to the input**:
    ``noisy = hu + FBP(p_ld) - FBP(p)``, so the input keeps its own resolution, texture and mean HU.
    ``i0`` is the full-dose photon count per ray per view; the noise variance scales about as
    ``1 / (k * i0 * n_views)``.

    ``input_has_noise=True`` (default) treats ``hu`` as a real scan acquired with ``i0``: it already
    holds the full-dose noise, so each ray's dose-k noise is scaled by ``sqrt(1 - var(I0) / var(k I0))``
    (variances of the log-counts, Poisson plus electronic) and only the excess variance is added, as in
    Zeng et al. 2015; ``dose_fraction=1`` then returns the input. ``input_has_noise=False`` treats
    ``hu`` as noise-free (a phantom) and adds the full dose-k noise, whose std grows as ``1 / sqrt(k)``.

    ``kernel`` sets the noise texture (:data:`KERNELS`: ``smooth``, ``standard``, ``sharp`` with fixed NPS
    peaks in cycles/mm, or the textbook ``ramp``, ``shepp-logan``, ``cosine``, ``hann`` cut off at the grid's
    Nyquist frequency; ``hann``, the default, is what ctdenoise 0.1 simulated). ``bowtie`` (``none``, ``body``,
    ``head``) lowers the incident flux towards the edge of the fan (:func:`bowtie_transmission`), so noise
    depends on position as behind a scanner's shaped filter; the geometry is that of fan-beam data rebinned
    to parallel rays, as third-generation scanners reconstruct them. ``slices_averaged`` = n makes each output
    slice the average of n thin slices of the same anatomy, each scanned at this dose (a thick slice from
    thin ones: noise std about ``1 / sqrt(n)``). Pixels below -1024 HU (scanner padding outside the field of view) are
    returned unchanged. Rectangular slices are padded with air to a square for the projection. The
    slice must hold the whole cross-section of the patient: tissue cut off by a cropped field of view is
    missing from the line integrals, so the simulated noise comes out too low.

    Args:
        hu: slice (H, W) or stack (N, H, W) in HU.
        pixel_spacing_mm: in-plane spacing, one number or (row, column); pixels must be square.
        dose_fraction: ``k`` in (0, 1]; 0.25 is a quarter-dose scan.
        kernel: a :data:`KERNELS` name or a :class:`ReconKernel`.
        bowtie: ``none``, ``body`` or ``head`` (:data:`BOWTIES`).
        slices_averaged: thin slices averaged into each output slice (>= 1).
        seed: integer seed (or a sequence of them) or numpy Generator; the same seed gives the same noise.

    Returns:
        float32 array of the input's shape, in HU.
    """
    volume = np.asarray(hu, dtype=np.float64)
    if volume.ndim not in (2, 3) or min(volume.shape[-2:]) < 8:
        raise ConfigError(
            "hu", f"expects a (H, W) slice or (N, H, W) stack of at least 8x8, got shape {volume.shape}"
        )
    if not np.all(np.isfinite(volume)):
        raise InputError(None, "the HU image holds NaN or infinite values")
    spacing = _as_spacing(pixel_spacing_mm)
    check_positive("dose_fraction", dose_fraction, upper=1.0)
    check_positive("i0", i0)
    check_positive("mu_water_per_mm", mu_water_per_mm)
    if electronic_noise_var < 0:
        raise ConfigError("electronic_noise_var", f"must be >= 0, got {electronic_noise_var!r}")
    if isinstance(slices_averaged, bool) or not isinstance(slices_averaged, (int, np.integer)) or slices_averaged < 1:
        raise ConfigError("slices_averaged", f"must be a whole number >= 1, got {slices_averaged!r}")
    known_bowtie = check_bowtie(bowtie)
    scan = _Scan(
        spacing, i0, dose_fraction, electronic_noise_var, n_views, get_kernel(kernel), known_bowtie, int(slices_averaged),
        input_has_noise, mu_water_per_mm,
    )
    rng = np.random.default_rng(seed)
    noisy = np.stack([_low_dose_slice(s, scan, rng) for s in volume.reshape((-1, *volume.shape[-2:]))])
    return noisy.reshape(volume.shape).astype(np.float32)


@dataclass(frozen=True)
class _Scan:
    """The validated parameters of one :func:`simulate_low_dose` call."""

    spacing_mm: float
    i0: float
    dose_fraction: float
    electronic_noise_var: float
    n_views: int
    kernel: ReconKernel
    bowtie: Bowtie
    slices_averaged: int
    input_has_noise: bool
    mu_water_per_mm: float


def _low_dose_slice(hu: np.ndarray, scan: _Scan, rng: np.random.Generator) -> np.ndarray:
    """One slice of :func:`simulate_low_dose`."""
    height, width = hu.shape
    size = max(height, width)
    top, left = (size - height) // 2, (size - width) // 2
    mu_per_pixel = scan.mu_water_per_mm * scan.spacing_mm
    mu = np.zeros((size, size))  # padding is air
    mu[top : top + height, left : left + width] = np.clip(mu_per_pixel * (1.0 + hu / 1000.0), 0.0, None)
    projector = get_projector(size, scan.n_views)
    line_integrals = np.clip(projector.project(mu), 0.0, None)
    offsets_mm = (np.arange(projector.n_detectors) - projector.n_detectors // 2) * scan.spacing_mm
    flux = scan.i0 * bowtie_transmission(scan.bowtie, offsets_mm, scan.mu_water_per_mm)[None, :]
    incident = scan.dose_fraction * flux
    excess = 1.0
    if scan.input_has_noise:
        transmission = np.exp(line_integrals)
        full_var = transmission / flux + scan.electronic_noise_var * (transmission / flux) ** 2
        low_var = transmission / incident + scan.electronic_noise_var * (transmission / incident) ** 2
        excess = np.sqrt(np.clip(1.0 - full_var / low_var, 0.0, None))
    noise = np.zeros_like(line_integrals)
    for _ in range(scan.slices_averaged):
        counts = rng.poisson(incident * np.exp(-line_integrals))
        counts = counts + rng.normal(0.0, np.sqrt(scan.electronic_noise_var), counts.shape)
        noise += -np.log(np.maximum(counts, MIN_COUNTS) / incident) - line_integrals
    noise *= excess / scan.slices_averaged
    noise_mu = projector.reconstruct(noise, scan.kernel, scan.spacing_mm)[top : top + height, left : left + width]
    noise_hu = 1000.0 * noise_mu / mu_per_pixel
    return np.where(hu < HU_MIN, hu, hu + noise_hu)
