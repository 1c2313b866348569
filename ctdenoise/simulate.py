"""Noise models for making paired low-/normal-dose CT data.

Two models, each a plain function and a MONAI random transform (array and dictionary form):

* :func:`add_gaussian_noise` / :class:`RandGaussianNoiseUnit`: the CLIPDenoising paper's training
  protocol, i.i.d. Gaussian noise on the model scale ``(HU + 1024) / 4096`` (default sigma 5/255,
  about 80 HU).
* :func:`simulate_low_dose` / :class:`RandLowDose`: physics-based low dose after Zeng et al. 2015
  (design.md section 4): HU -> attenuation, parallel-beam projection, Poisson counts at ``k * I0``
  plus Gaussian electronic noise, log, filtered back-projection, back to HU.

The projector is a Fourier-slice (gridding) implementation of the parallel-beam Radon transform and
of filtered back-projection, built on a non-uniform FFT with a Kaiser-Bessel kernel (the scheme of
"gridrec"): a 512 x 512 slice with 720 views takes a fraction of a second on two CPU cores, where
rotating the image per view costs several seconds. Its accuracy is checked by the tests against
analytic line integrals of a disk and by a noiseless projection/reconstruction round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy.special import i0 as bessel_i0

from ctdenoise.errors import ConfigError, InputError
from ctdenoise.intensity import HU_MIN
from ctdenoise.recon_kernels import (  # re-exported: the kernels are part of the simulation's interface
    BOWTIES,
    KERNELS,
    MU_WATER_PER_MM,
    Bowtie,
    ReconKernel,
    bowtie_transmission,
    check_bowtie,
    get_kernel,
)

#: Incident photons per ray (one detector bin of one view) at full dose.
DEFAULT_I0: float = 1e5
#: Variance of the electronic (detector read-out) noise, in photon counts squared.
DEFAULT_ELECTRONIC_NOISE_VAR: float = 10.0
#: Views over 180 degrees of the parallel-beam geometry.
DEFAULT_N_VIEWS: int = 720
#: Counts below this are replaced by it before the log (photon starvation).
MIN_COUNTS: float = 1.0
#: The paper's Gaussian noise level on the (HU + 1024) / 4096 scale (~80 HU).
PAPER_SIGMA: float = 5.0 / 255.0

ArrayOrTensor = Union[np.ndarray, torch.Tensor]

# Kaiser-Bessel gridding kernel: width in oversampled-grid cells and oversampling factor. With these
# values the interpolation error of the non-uniform FFT is about 1e-5 of the signal.
_KERNEL_WIDTH = 6
_OVERSAMPLING = 2
_KB_BETA = np.pi * np.sqrt((_KERNEL_WIDTH / _OVERSAMPLING) ** 2 * (_OVERSAMPLING - 0.5) ** 2 - 0.8)


def _kb_kernel(u: np.ndarray) -> np.ndarray:
    """Kaiser-Bessel kernel at offsets ``u`` (grid cells); zero for ``|u| > width / 2``."""
    arg = 1.0 - (2.0 * u / _KERNEL_WIDTH) ** 2
    return np.where(arg >= 0.0, bessel_i0(_KB_BETA * np.sqrt(np.clip(arg, 0.0, None))), 0.0)


def _kb_transform(x: np.ndarray, grid: int) -> np.ndarray:
    """Continuous Fourier transform of :func:`_kb_kernel` at image position ``x`` on a ``grid``-cell grid."""
    z = np.sqrt(_KB_BETA**2 - (np.pi * _KERNEL_WIDTH * x / grid) ** 2)
    return _KERNEL_WIDTH * np.sinh(z) / z


class _PolarGrid:
    """Interpolation tables between an oversampled Cartesian spectrum and polar frequency samples.

    Samples lie at frequencies ``(m / n_fft) * (cos theta, sin theta)`` cycles per pixel for
    ``m = 0 .. n_fft // 2`` and ``theta = pi * v / n_views``. Images are ``size x size`` pixels with
    the rotation centre at pixel ``(size // 2, size // 2)``.
    """

    def __init__(self, size: int, n_views: int, n_fft: int) -> None:
        self.size = size
        self.grid = _OVERSAMPLING * size
        self.shape = (n_views, n_fft // 2 + 1)
        theta = np.pi * np.arange(n_views) / n_views
        radius = np.arange(n_fft // 2 + 1) / n_fft
        # Grid coordinates (cells of the oversampled spectrum) of every sample, flattened.
        u_col = (np.cos(theta)[:, None] * radius[None, :]).ravel() * self.grid
        u_row = (np.sin(theta)[:, None] * radius[None, :]).ravel() * self.grid
        self.cols, self.col_weights = self._neighbours(u_col)
        self.rows, self.row_weights = self._neighbours(u_row)
        offsets = np.arange(size) - size // 2
        self.deapodization = 1.0 / _kb_transform(offsets, self.grid)
        self.pixel_cells = offsets % self.grid

    def _neighbours(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = np.ceil(u - _KERNEL_WIDTH / 2.0).astype(np.int64)
        cells = first[:, None] + np.arange(_KERNEL_WIDTH)[None, :]
        return cells % self.grid, _kb_kernel(u[:, None] - cells)

    def _place(self, image: np.ndarray) -> np.ndarray:
        """Deapodise ``image`` and put it on the oversampled grid (centre pixel at cell 0)."""
        grid = np.zeros((self.grid, self.grid), dtype=np.float64)
        scaled = image * self.deapodization[:, None] * self.deapodization[None, :]
        grid[np.ix_(self.pixel_cells, self.pixel_cells)] = scaled
        return grid

    def sample_spectrum(self, image: np.ndarray) -> np.ndarray:
        """Fourier transform of ``image`` at the polar samples (type-2 NUFFT): (views, radii)."""
        spectrum = np.fft.fft2(self._place(image)).ravel()
        samples = np.zeros(self.rows.shape[0], dtype=np.complex128)
        for k in range(_KERNEL_WIDTH):
            flat = self.rows[:, k, None] * self.grid + self.cols
            samples += self.row_weights[:, k] * np.einsum("sj,sj->s", spectrum[flat], self.col_weights)
        return samples.reshape(self.shape)

    def synthesise(self, coefficients: np.ndarray) -> np.ndarray:
        """Real part of ``sum_s c_s exp(+2 pi i nu_s . x)`` at the image pixels (non-uniform FFT type 1)."""
        coefficients = coefficients.ravel()
        cells = self.grid * self.grid
        real = np.zeros(cells)
        imag = np.zeros(cells)
        for k in range(_KERNEL_WIDTH):
            flat = (self.rows[:, k, None] * self.grid + self.cols).ravel()
            spread = (coefficients * self.row_weights[:, k])[:, None] * self.col_weights
            real += np.bincount(flat, weights=spread.real.ravel(), minlength=cells)
            imag += np.bincount(flat, weights=spread.imag.ravel(), minlength=cells)
        spectrum = (real + 1j * imag).reshape(self.grid, self.grid)
        image = np.fft.ifft2(spectrum).real * cells
        image = image[np.ix_(self.pixel_cells, self.pixel_cells)]
        return image * self.deapodization[:, None] * self.deapodization[None, :]


class ParallelBeamProjector:
    """Parallel-beam Radon transform and filtered back-projection of square images.

    Units are pixels: an image of attenuation per pixel projects to dimensionless line integrals.
    Views are spread evenly over 180 degrees; detector bins are one pixel wide, centred on the
    rotation centre (pixel ``size // 2``), and cover the image diagonal.

    The projection is band-limited (Fourier-slice theorem on a non-uniform FFT); the back-projection
    is the exact adjoint of that sampling, weighted by the ramp filter times a kernel's apodisation window,
    with the projections zero-padded to twice their length before filtering.
    """

    def __init__(self, size: int, n_views: int) -> None:
        if size < 8:
            raise ConfigError("image_size", f"must be at least 8 pixels, got {size}")
        if n_views < 2:
            raise ConfigError("n_views", f"must be at least 2, got {n_views}")
        self.size = size
        self.n_views = n_views
        self.n_detectors = 2 * int(np.ceil((size * np.sqrt(2.0) + 2.0) / 2.0))
        self._centre = self.n_detectors // 2
        self._forward = _PolarGrid(size, n_views, self.n_detectors)
        self._backward = _PolarGrid(size, n_views, 2 * self.n_detectors)

    def project(self, image: np.ndarray) -> np.ndarray:
        """Line integrals of ``image`` (size x size, per pixel): array (n_views, n_detectors)."""
        if image.shape != (self.size, self.size):
            raise ConfigError("image", f"projector expects {self.size}x{self.size}, got {image.shape}")
        spectrum = self._forward.sample_spectrum(np.asarray(image, dtype=np.float64))
        m = np.arange(spectrum.shape[1])
        shift = np.exp(-2j * np.pi * m * self._centre / self.n_detectors)
        return np.fft.irfft(spectrum * shift, n=self.n_detectors, axis=1)

    def reconstruct(
        self, sinogram: np.ndarray, kernel: str | ReconKernel = "hann", pixel_spacing_mm: float = 1.0
    ) -> np.ndarray:
        """Filtered back-projection of ``sinogram`` (n_views, n_detectors): image (size x size) per pixel.

        ``kernel`` names a :data:`KERNELS` entry (or is a :class:`ReconKernel`); ``pixel_spacing_mm`` places
        the cutoffs of kernels defined in cycles/mm on this grid (it does not scale the result).
        """
        if sinogram.shape != (self.n_views, self.n_detectors):
            raise ConfigError(
                "sinogram", f"expected {(self.n_views, self.n_detectors)}, got {sinogram.shape}"
            )
        n_fft = 2 * self.n_detectors
        spectrum = np.fft.rfft(np.asarray(sinogram, dtype=np.float64), n=n_fft, axis=1)
        m = np.arange(spectrum.shape[1])
        spectrum *= np.exp(2j * np.pi * m * self._centre / n_fft)
        weights = _filter_weights(m, n_fft, get_kernel(kernel), pixel_spacing_mm) * (np.pi / self.n_views) / n_fft
        return self._backward.synthesise(spectrum * weights[None, :])


def _filter_weights(m: np.ndarray, n_fft: int, kernel: ReconKernel, pixel_spacing_mm: float) -> np.ndarray:
    """Ramp filter at radial index ``m`` (of ``n_fft``), times the kernel's window and Hermitian multiplicity.

    The ramp is the DFT of the band-limited spatial ramp kernel (h[0] = 1/4, h[n odd] = -1/(pi n)^2;
    Kak & Slaney, ch. 3), which gets the DC term right where a sampled ``|nu|`` leaves a constant bias.
    Index ``m`` is the frequency ``m / n_fft`` cycles per detector bin (one pixel). Indices 1 .. n_fft/2 - 1
    stand for themselves and their negative twins (weight x 2).
    """
    n = np.concatenate([np.arange(0, n_fft // 2 + 1), np.arange(-(n_fft // 2) + 1, 0)])
    spatial = np.where(n % 2 == 1, -1.0 / (np.pi * np.maximum(np.abs(n), 1)) ** 2, 0.0)
    spatial[0] = 0.25
    ramp = np.fft.rfft(spatial).real[m]
    ramp = ramp * kernel.window_at(m / n_fft / pixel_spacing_mm, pixel_spacing_mm)
    multiplicity = np.where((m == 0) | (m == n_fft // 2), 1.0, 2.0)
    return ramp * multiplicity


@functools.lru_cache(maxsize=4)
def get_projector(size: int, n_views: int) -> ParallelBeamProjector:
    """A cached :class:`ParallelBeamProjector` (building one costs ~0.1 s for 512 x 512)."""
    return ParallelBeamProjector(size, n_views)


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


def _check_positive(key: str, value: float, upper: float | None = None) -> None:
    if not np.isfinite(value) or value <= 0 or (upper is not None and value > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise ConfigError(key, f"must be positive{bound}, got {value!r}")


def simulate_low_dose(
    hu: np.ndarray,
    pixel_spacing_mm: float | tuple[float, float],
    *,
    dose_fraction: float = 0.25,
    i0: float = DEFAULT_I0,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    n_views: int = DEFAULT_N_VIEWS,
    kernel: str | ReconKernel = "hann",
    bowtie: Bowtie = "none",
    slices_averaged: int = 1,
    input_has_noise: bool = True,
    seed: int | np.random.Generator | None = None,
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
        seed: integer seed or numpy Generator; the same seed gives the same noise.

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
    _check_positive("dose_fraction", dose_fraction, upper=1.0)
    _check_positive("i0", i0)
    _check_positive("mu_water_per_mm", mu_water_per_mm)
    if electronic_noise_var < 0:
        raise ConfigError("electronic_noise_var", f"must be >= 0, got {electronic_noise_var!r}")
    if isinstance(slices_averaged, bool) or not isinstance(slices_averaged, (int, np.integer)) or slices_averaged < 1:
        raise ConfigError("slices_averaged", f"must be a whole number >= 1, got {slices_averaged!r}")
    check_bowtie(bowtie)
    scan = _Scan(
        spacing, i0, dose_fraction, electronic_noise_var, n_views, get_kernel(kernel), bowtie, int(slices_averaged),
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


def add_gaussian_noise(
    unit: np.ndarray | torch.Tensor,
    sigma: float = PAPER_SIGMA,
    *,
    rng: int | np.random.Generator | torch.Generator | None = None,
) -> np.ndarray | torch.Tensor:
    """Add i.i.d. Gaussian noise of std ``sigma`` to an image on the (HU + 1024) / 4096 scale.

    The CLIPDenoising CT protocol (sigma = 5/255, about 80 HU). The result is **not clipped** to
    [0, 1], like the paper's training code: clipping would bias the noise in air and dense bone.
    Returns the input's type, dtype and device. ``rng`` is a seed, or a numpy Generator for arrays /
    a torch Generator for tensors (on the tensor's device); ``None`` draws from a fresh OS seed
    (arrays) or torch's global generator (tensors).
    """
    _check_positive("sigma", sigma)
    if isinstance(unit, torch.Tensor):
        if isinstance(rng, int):
            rng = torch.Generator(device=unit.device).manual_seed(rng)
        if rng is not None and not isinstance(rng, torch.Generator):
            raise TypeError(f"a tensor needs an int seed or a torch.Generator, got {type(rng).__name__}")
        dtype = unit.dtype if unit.is_floating_point() else torch.float32
        noise = torch.randn(unit.shape, generator=rng, device=unit.device, dtype=dtype)
        return unit.to(dtype) + sigma * noise
    if isinstance(rng, torch.Generator):
        raise TypeError("a numpy array needs an int seed or a numpy Generator, got a torch.Generator")
    array = np.asarray(unit)
    dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.float32
    noise = np.random.default_rng(rng).standard_normal(array.shape)
    return (array + sigma * noise).astype(dtype)


def _draw(value: float | tuple[float, float], state: np.random.RandomState) -> float:
    """``value`` itself, or a uniform draw from the ``(low, high)`` range."""
    if isinstance(value, tuple):
        return float(state.uniform(*value))
    return float(value)


def _choices(key: str, value: str | Sequence[str], check: Callable[[str], object]) -> tuple[str, ...]:
    """``value`` as a non-empty tuple of names, each validated by ``check`` (which raises a ConfigError)."""
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names:
        raise ConfigError(key, "give at least one name")
    for name in names:
        check(name)
    return names


def _check_range(key: str, value: float | tuple[float, float], upper: float | None = None) -> None:
    for v in value if isinstance(value, tuple) else (value,):
        _check_positive(key, v, upper)
    if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
        raise ConfigError(key, f"a range must be (low, high) with low <= high, got {value!r}")


class _RandParameterTransform(RandomizableTransform):
    """A random transform that draws one parameter (fixed or from a range) and a noise seed per call."""

    def __init__(self, prob: float, parameter: float | tuple[float, float]) -> None:
        RandomizableTransform.__init__(self, prob)
        self._parameter = parameter
        self._value = 0.0
        self._seed = 0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self._value = _draw(self._parameter, self.R)
        self._seed = int(self.R.randint(0, 2**31 - 1))


class RandGaussianNoiseUnit(_RandParameterTransform):
    """Randomly add the paper's Gaussian noise (:func:`add_gaussian_noise`) to a channel-first image.

    The image is on the (HU + 1024) / 4096 scale. ``sigma`` is fixed or drawn uniformly from a
    ``(low, high)`` range per call. Output is not clipped.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 1.0, sigma: float | tuple[float, float] = PAPER_SIGMA) -> None:
        _check_range("sigma", sigma)
        super().__init__(prob, sigma)

    def __call__(self, img: np.ndarray | torch.Tensor, randomize: bool = True) -> np.ndarray | torch.Tensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return add_gaussian_noise(img, self._value, rng=self._seed)


class RandLowDose(_RandParameterTransform):
    """Randomly turn a channel-first normal-dose HU image (C, H, W) into a simulated low-dose one.

    Applies :func:`simulate_low_dose` to each channel. ``dose_fraction`` is fixed or drawn uniformly
    from a ``(low, high)`` range per call; ``kernel`` and ``bowtie`` are one name, or a sequence of names of
    which one is drawn uniformly per call (a training set that spans scanners). The pixel spacing is ``pixel_spacing_mm`` when given, else
    read from the MetaTensor's affine (``pixdim``); a plain array without a spacing is an error.
    Apply it to HU images, before any normalisation.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        prob: float = 1.0,
        dose_fraction: float | tuple[float, float] = 0.25,
        pixel_spacing_mm: float | tuple[float, float] | None = None,
        i0: float = DEFAULT_I0,
        electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
        n_views: int = DEFAULT_N_VIEWS,
        kernel: str | Sequence[str] = "hann",
        bowtie: Bowtie | Sequence[Bowtie] = "none",
        slices_averaged: int = 1,
        input_has_noise: bool = True,
    ) -> None:
        _check_range("dose_fraction", dose_fraction, upper=1.0)
        super().__init__(prob, dose_fraction)
        self.pixel_spacing_mm = pixel_spacing_mm
        self.kernels = _choices("kernel", kernel, get_kernel)
        self.bowties = _choices("bowtie", bowtie, check_bowtie)
        self._kernel, self._bowtie = self.kernels[0], self.bowties[0]
        self.simulation = dict(
            i0=i0, electronic_noise_var=electronic_noise_var, n_views=n_views, slices_averaged=slices_averaged,
            input_has_noise=input_has_noise,
        )

    def randomize(self, data: object = None) -> None:
        super().randomize(data)
        self._kernel = self.kernels[int(self.R.randint(len(self.kernels)))]
        self._bowtie = self.bowties[int(self.R.randint(len(self.bowties)))]

    def _spacing(self, img: np.ndarray | torch.Tensor) -> float | tuple[float, float]:
        if self.pixel_spacing_mm is not None:
            return self.pixel_spacing_mm
        pixdim = getattr(img, "pixdim", None)
        if pixdim is None:
            raise ConfigError(
                "pixel_spacing_mm", "not given, and the image is not a MetaTensor with an affine"
            )
        return tuple(float(v) for v in np.asarray(pixdim)[:2])

    def __call__(self, img: np.ndarray | torch.Tensor, randomize: bool = True) -> np.ndarray | torch.Tensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        hu = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        spacing = self._spacing(img)
        noisy = simulate_low_dose(
            hu, spacing, dose_fraction=self._value, kernel=self._kernel, bowtie=self._bowtie, seed=self._seed,
            **self.simulation,
        )
        return convert_to_dst_type(noisy, dst=img, dtype=noisy.dtype)[0]


class _RandWrapd(RandomizableTransform, MapTransform):
    """Dictionary form of a random array transform: one draw per call, shared by all keys (as MONAI does)."""

    def __init__(
        self, keys: KeysCollection, prob: float, transform: RandomizableTransform, allow_missing_keys: bool
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.transform = transform

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> "_RandWrapd":
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, ArrayOrTensor]) -> dict[Hashable, ArrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.transform.randomize()
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=False)
        return d


class RandGaussianNoiseUnitd(_RandWrapd):
    """Dictionary form of :class:`RandGaussianNoiseUnit`; all ``keys`` get the same noise draw."""

    backend = RandGaussianNoiseUnit.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        sigma: float | tuple[float, float] = PAPER_SIGMA,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, RandGaussianNoiseUnit(prob=1.0, sigma=sigma), allow_missing_keys)


class RandLowDosed(_RandWrapd):
    """Dictionary form of :class:`RandLowDose`; all ``keys`` get the same dose and seed."""

    backend = RandLowDose.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        dose_fraction: float | tuple[float, float] = 0.25,
        pixel_spacing_mm: float | tuple[float, float] | None = None,
        i0: float = DEFAULT_I0,
        electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
        n_views: int = DEFAULT_N_VIEWS,
        kernel: str | Sequence[str] = "hann",
        bowtie: Bowtie | Sequence[Bowtie] = "none",
        slices_averaged: int = 1,
        input_has_noise: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        array_form = RandLowDose(
            prob=1.0, dose_fraction=dose_fraction, pixel_spacing_mm=pixel_spacing_mm, i0=i0,
            electronic_noise_var=electronic_noise_var, n_views=n_views, kernel=kernel, bowtie=bowtie,
            slices_averaged=slices_averaged, input_has_noise=input_has_noise,
        )
        super().__init__(keys, prob, array_form, allow_missing_keys)
