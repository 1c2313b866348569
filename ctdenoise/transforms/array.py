"""The array forms of ctdenoise's MONAI transforms: each takes one channel-first image.

* :class:`HUToModelRange`: invertible HU -> model range ((HU+1024)/4096, clipped to [-1024, 3072] HU).
* :class:`DenoiseSlices`: run a denoiser over every 2D slice of a HU volume and return HU.
* :class:`RandGaussianNoiseUnit`: the paper's Gaussian noise (:func:`ctdenoise.simulate.add_gaussian_noise`).
* :class:`RandLowDose`: a simulated low dose (:func:`ctdenoise.simulate.simulate_low_dose`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from ctdenoise.errors import ConfigError
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.runtime.denoise import denoise_hu, run_settings
from ctdenoise.runtime.options import DEFAULT_STRENGTH
from ctdenoise.runtime.prepare import PreparedModel, prepare
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.simulate import (
    DEFAULT_ELECTRONIC_NOISE_VAR,
    DEFAULT_I0,
    DEFAULT_N_VIEWS,
    PAPER_SIGMA,
    Bowtie,
    add_gaussian_noise,
    check_bowtie,
    get_kernel,
    simulate_low_dose,
)
from ctdenoise.simulate.checks import check_positive
from ctdenoise.strength_table import StrengthTable, strength_setting


class HUToModelRange(InvertibleTransform, Transform):
    """Map HU to the model range [0, 1]; ``inverse`` maps model-range values back to HU.

    With ``clip=True`` (the model's convention) HU outside [-1024, 3072] are clipped, so the
    inverse is exact only inside that range.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, clip: bool = True) -> None:
        self.clip = clip

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        out = hu_to_unit(convert_to_tensor(img, track_meta=True, dtype=torch.float32), clip=self.clip)
        self.push_transform(out, extra_info={"clip": self.clip})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        self.pop_transform(data)
        return unit_to_hu(convert_to_tensor(data, track_meta=True, dtype=torch.float32))


class DenoiseSlices(Transform):
    """Denoise a channel-first single-channel HU volume (1, X, Y, Z) slice by slice.

    ``model`` is a prepared model (:func:`ctdenoise.runtime.prepare.load_prepared` or
    :func:`~ctdenoise.runtime.prepare.prepare`; then ``settings`` may be left out) or a denoiser taking
    (B, 1, H, W) model-range input (e.g. a :class:`ctdenoise.model.CLIPDenoiser`), prepared here once for
    ``settings`` (default :class:`~ctdenoise.runtime.settings.InferenceSettings`); ``spatial_dim`` (0, 1 or 2)
    is the spatial axis the slices are taken across (2 = axial for volumes from ``LoadImage``). A 2D image
    (1, X, Y) is denoised as one slice. ``strength`` in [0, 1] replaces the settings' strength: the output is
    ``input + strength * (model output - input)`` in HU (ConfigError outside [0, 1]); ``"auto"`` (or a
    :class:`~ctdenoise.strength_table.StrengthTable`) takes each volume's strength from the table at the
    volume's estimated noise, the table being ``strength.json`` in the prepared model's folder
    (``model_dir``; ModelError when there is none, or for a bare network); ``"low"``, ``"medium"`` or ``"high"``
    the preset's strength from ``presets.json`` in that folder (ModelError likewise). Returns float32 HU with the
    input's shape and meta data.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        model: PreparedModel | torch.nn.Module,
        spatial_dim: int = 2,
        settings: InferenceSettings | None = None,
        strength: float | str | StrengthTable = DEFAULT_STRENGTH,
    ) -> None:
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2, got {spatial_dim}")
        # prepared once here, not on every call
        self.model = model if isinstance(model, PreparedModel) else prepare(model, settings or InferenceSettings())
        self.settings = replace(run_settings(self.model, settings),
                                strength=strength_setting(strength, self.model.model_dir))
        self.spatial_dim = spatial_dim

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        tensor = convert_to_tensor(img, track_meta=True, dtype=torch.float32)
        if tensor.ndim not in (3, 4) or tensor.shape[0] != 1:
            raise ValueError(f"expected a channel-first single-channel image (1, X, Y[, Z]), got {tuple(tensor.shape)}")
        array = tensor.detach().cpu().numpy()[0]
        if array.ndim == 2:
            denoised = denoise_hu(self.model, array, self.settings)
        else:
            slices_first = np.moveaxis(array, self.spatial_dim, 0)
            denoised = np.moveaxis(denoise_hu(self.model, slices_first, self.settings), 0, self.spatial_dim)
        out = torch.from_numpy(np.ascontiguousarray(denoised)[None])
        if isinstance(tensor, MetaTensor):
            out = MetaTensor(out, meta=tensor.meta, applied_operations=tensor.applied_operations)
        return out


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
        check_positive(key, v, upper)
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
        if isinstance(img, torch.Tensor):  # add_gaussian_noise returns the type it is given
            return add_gaussian_noise(img, self._value, rng=self._seed)
        return add_gaussian_noise(np.asarray(img), self._value, rng=self._seed)


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
        self.simulation: dict[str, Any] = dict(
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
        rows, columns = (float(v) for v in np.asarray(pixdim)[:2])
        return rows, columns

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
