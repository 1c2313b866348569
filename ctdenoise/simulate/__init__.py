"""Noise models for making paired low-/normal-dose CT data, as plain functions (no MONAI).

* :func:`add_gaussian_noise` (:mod:`~ctdenoise.simulate.gaussian`): the CLIPDenoising paper's training
  protocol, i.i.d. Gaussian noise on the model scale ``(HU + 1024) / 4096`` (default sigma 5/255,
  about 80 HU).
* :func:`simulate_low_dose` (:mod:`~ctdenoise.simulate.low_dose`): physics-based low dose after Zeng et al.
  2015 (docs/simulation.md): HU -> attenuation, parallel-beam projection, Poisson counts at ``k * I0``
  plus Gaussian electronic noise, log, filtered back-projection, back to HU.
* :class:`ParallelBeamProjector` / :func:`get_projector` (:mod:`~ctdenoise.simulate.projector`): the
  Fourier-slice (gridding) Radon transform and filtered back-projection the low dose is simulated with.
* The reconstruction kernels and bowtie filters (:mod:`ctdenoise.recon_kernels`), re-exported as part of the
  simulation's interface.

Their MONAI random transforms (:class:`~ctdenoise.transforms.RandGaussianNoiseUnit`,
:class:`~ctdenoise.transforms.RandLowDose` and their dictionary forms) live in :mod:`ctdenoise.transforms`.
"""

from ctdenoise.recon_kernels import (
    BOWTIES,
    KERNELS,
    MU_WATER_PER_MM,
    Bowtie,
    ReconKernel,
    bowtie_transmission,
    check_bowtie,
    get_kernel,
)
from ctdenoise.simulate.gaussian import PAPER_SIGMA, add_gaussian_noise
from ctdenoise.simulate.low_dose import (
    DEFAULT_ELECTRONIC_NOISE_VAR,
    DEFAULT_I0,
    DEFAULT_N_VIEWS,
    MIN_COUNTS,
    simulate_low_dose,
)
from ctdenoise.simulate.projector import ParallelBeamProjector, get_projector

__all__ = [
    "BOWTIES",
    "DEFAULT_ELECTRONIC_NOISE_VAR",
    "DEFAULT_I0",
    "DEFAULT_N_VIEWS",
    "KERNELS",
    "MIN_COUNTS",
    "MU_WATER_PER_MM",
    "PAPER_SIGMA",
    "Bowtie",
    "ParallelBeamProjector",
    "ReconKernel",
    "add_gaussian_noise",
    "bowtie_transmission",
    "check_bowtie",
    "get_kernel",
    "get_projector",
    "simulate_low_dose",
]
