"""The trainable UNet-like decoder of CLIPDenoising (docs/model.md draws it with the encoder).

Blocks of two [conv3x3 -> LeakyReLU(0.2)], no normalisation; bilinear x2 upsampling
(``align_corners=True``, as the public code) and concatenation ``[upsampled, skip]``. For RN50 (width 64):
layer3 (1024) -> 512; up + layer2 (512+512) -> 256; up + layer1 (256+256) -> 128; up + stem (128+64)
-> 64; up + image (64+3) -> 64; conv3x3 -> output channels. 10,989,825 parameters for RN50 and 1 output
channel, the paper's 10.99 M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAKY_SLOPE = 0.2


class ConvBlock(nn.Sequential):
    """conv3x3 -> LeakyReLU(0.2) -> conv3x3 -> LeakyReLU(0.2), with biases, no normalisation."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )


class UpBlock(nn.Module):
    """Bilinear x2 upsampling of ``x``, concatenation with the skip ``[up(x), skip]``, then a ConvBlock."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(in_channels + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.block(torch.cat([up, skip], dim=1))


class Decoder(nn.Module):
    """Decode ``[image, stem, layer1, layer2, layer3]`` features into the clean image.

    ``feature_channels`` are the channels of stem, layer1, layer2, layer3 (width * (1, 4, 8, 16));
    ``image_channels`` those of the image skip (3); ``out_channels`` those of the output image.
    """

    def __init__(self, feature_channels: tuple[int, int, int, int], image_channels: int, out_channels: int) -> None:
        super().__init__()
        stem_ch, l1_ch, l2_ch, l3_ch = feature_channels
        self.bottom = ConvBlock(l3_ch, l3_ch // 2)
        self.up2 = UpBlock(l3_ch // 2, l2_ch, l3_ch // 4)
        self.up1 = UpBlock(l3_ch // 4, l1_ch, l3_ch // 8)
        self.up_stem = UpBlock(l3_ch // 8, stem_ch, stem_ch)
        self.up_image = UpBlock(stem_ch, image_channels, stem_ch)
        self.last = nn.Conv2d(stem_ch, out_channels, kernel_size=3, padding=1)

    def forward(self, image: Tensor, stem: Tensor, f1: Tensor, f2: Tensor, f3: Tensor) -> Tensor:
        """Return the decoded image at the resolution of ``image``."""
        x = self.bottom(f3)
        x = self.up2(x, f2)
        x = self.up1(x, f1)
        x = self.up_stem(x, stem)
        x = self.up_image(x, image)
        return self.last(x)
