"""MONAI transforms for CT denoising, in MONAI's array (:mod:`~ctdenoise.transforms.array`) and dictionary
(:mod:`~ctdenoise.transforms.dictionary`) forms.

* :class:`HUToModelRange` / :class:`HUToModelRanged`: invertible HU -> model range ((HU+1024)/4096,
  clipped to [-1024, 3072] HU). The operation is recorded on the MetaTensor, so ``inverse()`` and
  ``monai.transforms.Invertd`` bring model-range values (e.g. a network's output) back to HU.
* :class:`DenoiseSlices` / :class:`DenoiseSlicesd`: run a denoiser over every 2D slice of a
  channel-first HU volume along ``spatial_dim`` and return HU; the MetaTensor meta (affine, file
  name) is kept, so ``SaveImaged`` writes the result in the input's geometry. ``strength`` (0..1, default
  :data:`ctdenoise.runtime.options.DEFAULT_STRENGTH`) blends the model output with the input in HU, exactly as
  ``ctdenoise denoise --strength`` does (:func:`ctdenoise.runtime.denoise.blend_strength`); ``"auto"`` sets it per
  volume from the volume's estimated noise with the model folder's strength table
  (:mod:`ctdenoise.strength_table`).
* :class:`RandGaussianNoiseUnit` / :class:`RandGaussianNoiseUnitd` and :class:`RandLowDose` /
  :class:`RandLowDosed`: the noise models of :mod:`ctdenoise.simulate` as MONAI random transforms (a
  ``sigma`` or ``dose_fraction`` fixed or drawn per call from a range; one draw per call for all keys).

Axis convention: ``LoadImage`` returns arrays indexed (x, y, z) for NIfTI, NRRD and DICOM, so after
``EnsureChannelFirst`` an axial slice is ``img[:, :, :, k]`` and ``spatial_dim=2`` (the default)
selects axial slices. ``monai.inferers.SliceInferer(roi_size=(-1, -1), spatial_dim=2)`` uses the
same convention with the model itself as the network (on model-range input), for a 2-D model only: it hands the
network one slice at a time, which a 2.5-D model (``context_slices`` 3) refuses (ModelError naming the expected
(B, 3, H, W) input); :class:`DenoiseSlices` gives a 2.5-D model each slice's neighbours.
"""

from ctdenoise.transforms.array import (
    DenoiseSlices,
    HUToModelRange,
    RandGaussianNoiseUnit,
    RandLowDose,
)
from ctdenoise.transforms.dictionary import (
    DenoiseSlicesd,
    HUToModelRanged,
    RandGaussianNoiseUnitd,
    RandLowDosed,
)

__all__ = [
    "DenoiseSlices",
    "DenoiseSlicesd",
    "HUToModelRange",
    "HUToModelRanged",
    "RandGaussianNoiseUnit",
    "RandGaussianNoiseUnitd",
    "RandLowDose",
    "RandLowDosed",
]
