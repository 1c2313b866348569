"""The CLIP ResNet image tower, truncated after layer3, as a dense multi-scale feature extractor.

Built from open_clip's ``Bottleneck`` with exactly the attribute names of open_clip's / OpenAI's
``ModifiedResNet`` (``conv1``, ``bn1``, ..., ``layer1.0.downsample.0.weight``), so CLIP state dicts
load key for key. ``layer4`` and ``attnpool`` are never built, never held in memory and never computed:
the denoiser uses only the stem and layers 1-3 (docs/model.md: what leaving layer4 out saves).
"""

from __future__ import annotations

import torch
from open_clip.modified_resnet import Bottleneck
from torch import Tensor, nn

from ctdenoise.model.config import EncoderSpec


class CLIPResNetEncoder(nn.Module):
    """Stem + layer1..layer3 of a CLIP ``ModifiedResNet``; ``forward`` returns the four dense features.

    For an input (B, 3, H, W) with H, W divisible by 16, the features are: stem output after the third
    conv+BN+ReLU and before the avgpool (width ch, H/2), layer1 (4*width, H/4), layer2 (8*width, H/8),
    layer3 (16*width, H/16). Randomly initialised as open_clip initialises a CLIP ResNet (bn3 scales of
    each bottleneck zero); load CLIP weights with :meth:`CLIPDenoiser.load_encoder_weights`.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        width = spec.width
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self.layer1 = make_stage(width, width, spec.layers[0], stride=1)
        self.layer2 = make_stage(width * 4, width * 2, spec.layers[1], stride=2)
        self.layer3 = make_stage(width * 8, width * 4, spec.layers[2], stride=2)
        for layer in (self.layer1, self.layer2, self.layer3):
            for name, param in layer.named_parameters():
                if name.endswith("bn3.weight"):
                    nn.init.zeros_(param)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return ``[stem, layer1, layer2, layer3]`` features of a (B, 3, H, W) image batch."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        stem = self.relu(self.bn3(self.conv3(x)))
        f1 = self.layer1(self.avgpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3]

    def weight_shapes(self) -> dict[str, torch.Size]:
        """Shapes of every tensor a CLIP weight file must supply (``num_batches_tracked`` counters excluded)."""
        return {k: v.shape for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}


def make_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """A CLIP ResNet stage: one (possibly strided, avgpool-antialiased) bottleneck then ``blocks - 1`` more."""
    stage = [Bottleneck(inplanes, planes, stride)]
    stage += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*stage)
