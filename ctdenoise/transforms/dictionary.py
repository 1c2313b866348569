"""The dictionary forms of ctdenoise's MONAI transforms: each applies its array form
(:mod:`ctdenoise.transforms.array`) to the images under ``keys``; a random one draws once per call for all keys."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform

from ctdenoise.runtime.options import DEFAULT_STRENGTH
from ctdenoise.runtime.prepare import PreparedModel
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.simulate import (
    DEFAULT_ELECTRONIC_NOISE_VAR,
    DEFAULT_I0,
    DEFAULT_N_VIEWS,
    PAPER_SIGMA,
    Bowtie,
)
from ctdenoise.strength_table import StrengthTable
from ctdenoise.transforms.array import (
    DenoiseSlices,
    HUToModelRange,
    RandGaussianNoiseUnit,
    RandLowDose,
)

ArrayOrTensor = np.ndarray | torch.Tensor


class HUToModelRanged(MapTransform, InvertibleTransform):
    """Dictionary form of :class:`HUToModelRange`."""

    backend = HUToModelRange.backend

    def __init__(self, keys: KeysCollection, clip: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = HUToModelRange(clip=clip)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter.inverse(d[key])
        return d


class DenoiseSlicesd(MapTransform):
    """Dictionary form of :class:`DenoiseSlices`."""

    backend = DenoiseSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        model: PreparedModel | torch.nn.Module,
        spatial_dim: int = 2,
        settings: InferenceSettings | None = None,
        allow_missing_keys: bool = False,
        strength: float | str | StrengthTable = DEFAULT_STRENGTH,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.denoiser = DenoiseSlices(model, spatial_dim=spatial_dim, settings=settings, strength=strength)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.denoiser(d[key])
        return d


class _RandWrapd(RandomizableTransform, MapTransform):
    """Dictionary form of a random array transform: one draw per call, shared by all keys (as MONAI does)."""

    def __init__(
        self, keys: KeysCollection, prob: float, transform: RandGaussianNoiseUnit | RandLowDose, allow_missing_keys: bool
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.transform = transform

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> _RandWrapd:
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
