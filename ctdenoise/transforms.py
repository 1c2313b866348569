"""MONAI transforms for CT denoising, in MONAI's array and dictionary forms.

* :class:`HUToModelRange` / :class:`HUToModelRanged`: invertible HU -> model range ((HU+1024)/4096,
  clipped to [-1024, 3072] HU). The operation is recorded on the MetaTensor, so ``inverse()`` and
  ``monai.transforms.Invertd`` bring model-range values (e.g. a network's output) back to HU.
* :class:`DenoiseSlices` / :class:`DenoiseSlicesd`: run a denoiser over every 2D slice of a
  channel-first HU volume along ``spatial_dim`` and return HU; the MetaTensor meta (affine, file
  name) is kept, so ``SaveImaged`` writes the result in the input's geometry. ``strength`` (0..1, default
  :data:`ctdenoise.inference.DEFAULT_STRENGTH`) blends the model output with the input in HU, exactly as
  ``ctdenoise denoise --strength`` does (:func:`ctdenoise.inference.blend_strength`); ``"auto"`` sets it per
  volume from the volume's estimated noise with the model folder's strength table
  (:mod:`ctdenoise.strength_table`).

Axis convention: ``LoadImage`` returns arrays indexed (x, y, z) for NIfTI, NRRD and DICOM, so after
``EnsureChannelFirst`` an axial slice is ``img[:, :, :, k]`` and ``spatial_dim=2`` (the default)
selects axial slices. ``monai.inferers.SliceInferer(roi_size=(-1, -1), spatial_dim=2)`` uses the
same convention with the model itself as the network (on model-range input).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import replace

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

from ctdenoise.inference import DEFAULT_STRENGTH, InferenceSettings, denoise_hu, prepare_for_settings
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.strength_table import StrengthTable, strength_setting

__all__ = ["HUToModelRange", "HUToModelRanged", "DenoiseSlices", "DenoiseSlicesd"]


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


class DenoiseSlices(Transform):
    """Denoise a channel-first single-channel HU volume (1, X, Y, Z) slice by slice.

    ``model`` is a denoiser taking (B, 1, H, W) model-range input (e.g. a
    :class:`ctdenoise.model.CLIPDenoiser`); ``spatial_dim`` (0, 1 or 2) is the spatial axis the
    slices are taken across (2 = axial for volumes from ``LoadImage``). A 2D image (1, X, Y) is
    denoised as one slice. ``strength`` in [0, 1] replaces ``settings.strength``: the output is
    ``input + strength * (model output - input)`` in HU (ConfigError outside [0, 1]); ``"auto"`` (or a
    :class:`~ctdenoise.strength_table.StrengthTable`) takes each volume's strength from the table at the
    volume's estimated noise, the table being ``strength.json`` in the folder ``model`` was loaded from
    (:func:`ctdenoise.registry.load_model`; ModelError when there is none). Returns float32 HU with the
    input's shape and meta data.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        model: torch.nn.Module,
        spatial_dim: int = 2,
        settings: InferenceSettings = InferenceSettings(),
        strength: float | str | StrengthTable = DEFAULT_STRENGTH,
    ) -> None:
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2, got {spatial_dim}")
        self.settings = replace(settings, strength=strength_setting(strength, getattr(model, "model_dir", None)))
        self.model = prepare_for_settings(model, self.settings)  # fold/convert once, not on every call
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


class DenoiseSlicesd(MapTransform):
    """Dictionary form of :class:`DenoiseSlices`."""

    backend = DenoiseSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        model: torch.nn.Module,
        spatial_dim: int = 2,
        settings: InferenceSettings = InferenceSettings(),
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
