"""CLIPDenoiser: frozen CLIP ResNet encoder (stem..layer3) + trainable UNet-like decoder.

Decisions taken deliberately against the public CLIPDenoising code (docs/model.md lists them with their measurements):

* The frozen encoder's BatchNorm stays in eval mode even after ``model.train()`` (the public code lets
  it run in train mode, so the CLIP running statistics drift towards the training data). With
  ``train_encoder=True`` the encoder is trainable and its BatchNorm follows the model's mode.
* ``layer4`` and the attention pool are neither built nor computed (the public code computes layer4
  and discards it).
* The 1-to-3 channel input convolution has no bias (the public code's has one: 3 more parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctdenoise.errors import ModelError, WeightsError
from ctdenoise.model.config import ModelConfig, encoder_spec
from ctdenoise.model.decoder import Decoder
from ctdenoise.model.encoder import CLIPResNetEncoder
from ctdenoise.model.weights import ResolvedWeights, select_encoder_tensors

#: Inputs are reflect-padded so that H and W are multiples of this (the CLIP ResNet's total stride).
PAD_MULTIPLE = 32
ENCODER_INPUT_CHANNELS = 3


class CLIPDenoiser(nn.Module):
    """Denoise images in the model range [0, 1]: ``(B, C * S, H, W) -> (B, C, H, W)`` for any H, W, with C
    ``config.in_channels`` and S ``config.context_slices`` (1, or 3 for the slices below, at and above the one
    denoised: the output is the centre slice; :func:`ctdenoise.model.context.context_model_from_2d` builds a
    3-slice model that starts as a given 2-D model).

    The encoder starts randomly initialised; put CLIP weights in with :meth:`load_encoder_weights`.
    ``encoder_weights_sha256`` / ``encoder_weights_origin`` record which weights were loaded (None
    while random). In training mode, feature i of (stem, layer1, layer2, layer3) is multiplied
    elementwise by noise from N(1, (i * a)^2), a = ``config.feature_aug_level``; the image skip is
    never perturbed, and nothing is random in eval mode.
    """

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        spec = encoder_spec(config.encoder_name)
        self.input_conv = nn.Conv2d(config.input_channels, ENCODER_INPUT_CHANNELS, kernel_size=1, bias=False)
        self.encoder = CLIPResNetEncoder(spec)
        self.decoder = Decoder(spec.feature_channels, ENCODER_INPUT_CHANNELS, config.in_channels)
        self.encoder.requires_grad_(config.train_encoder)
        self.encoder_weights_sha256: str | None = None
        self.encoder_weights_origin: str | None = None
        self.train()

    def train(self, mode: bool = True) -> CLIPDenoiser:
        """Set training mode; a frozen encoder (``train_encoder=False``) always stays in eval mode."""
        super().train(mode)
        if not self.config.train_encoder:
            self.encoder.eval()
        return self

    def load_encoder_weights(self, weights: ResolvedWeights) -> None:
        """Copy CLIP weights into the encoder after a strict check of every key and shape.

        Raises WeightsError (naming the keys) for missing, unexpected or wrongly shaped tensors, or when
        the weights belong to another encoder than ``config.encoder_name``.
        """
        if weights.encoder_name != self.config.encoder_name:
            raise WeightsError(
                f"{weights.origin}: weights of CLIP {weights.encoder_name} cannot go into a "
                f"{self.config.encoder_name} encoder"
            )
        tensors = select_encoder_tensors(weights.state_dict, self.config.encoder_name, weights.origin)
        targets = self.encoder.state_dict()
        with torch.no_grad():
            for key, tensor in tensors.items():
                targets[key].copy_(tensor)
        self.encoder_weights_sha256 = weights.sha256
        self.encoder_weights_origin = weights.origin

    def forward(self, x: Tensor) -> Tensor:
        """Return the denoised batch (B, in_channels, H, W); ``x`` is (B, in_channels * context_slices, H, W) in
        [0, 1], any H, W >= 1."""
        if x.ndim != 4 or x.shape[1] != self.config.input_channels:
            raise ModelError(
                f"expected a (B, {self.config.input_channels}, H, W) batch, got shape {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        image = self.input_conv(reflect_pad_to_multiple(x, PAD_MULTIPLE))
        features = self.encoder(image)
        if self.training and self.config.feature_aug_level > 0:
            features = [
                feature * (1.0 + torch.randn_like(feature) * (level * self.config.feature_aug_level))
                for level, feature in enumerate(features, start=1)
            ]
        out = self.decoder(image, *features)
        return out[..., :height, :width]


def reflect_pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the bottom and right of ``x`` (B, C, H, W) by reflection up to multiples of ``multiple``.

    Pads larger than the image are done by repeated reflection; a side of length 1 is replicated.
    """
    while True:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h == 0 and pad_w == 0:
            return x
        if min(height, width) == 1:
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, min(pad_w, width - 1), 0, min(pad_h, height - 1)), mode="reflect")


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``trainable`` (requires_grad), ``frozen_encoder`` (frozen ones, i.e. the used CLIP
    encoder tensors when it is frozen) and ``total``. Buffers (BatchNorm statistics) are not counted."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen_encoder": frozen, "total": trainable + frozen}
