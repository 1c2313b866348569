"""RED-CNN (Chen et al., "Low-dose CT with a residual encoder-decoder convolutional neural network",
IEEE TMI 2017), the supervised baseline of the LDCT literature.

Architecture as in the paper and its reference code: five 5x5 convolutions (valid padding, 96 filters,
ReLU) and five 5x5 transposed convolutions back to the input size, with three residual shortcuts
(input -> output, after conv2 -> after deconv3, after conv4 -> after deconv1) and a final ReLU. It works
on the model scale ``(HU + 1024) / 4096`` like the CLIPDenoiser (:mod:`ctdenoise.intensity`), so both
are trained on identical pairs, evaluated by the same harness and saved in the same checkpoint format
(:mod:`ctdenoise.model.checkpoint`, architecture ``redcnn``). About 1.85 M parameters.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ctdenoise.errors import ConfigError

#: Largest ``filters`` and ``kernel_size`` a checkpoint may ask for (the paper's are 96 and 5).
MAX_FILTERS = 1024
MAX_KERNEL_SIZE = 15


class REDCNN(nn.Module):
    """RED-CNN on (B, 1, H, W) images in [0, 1]; returns the denoised batch of the same shape."""

    def __init__(self, filters: int = 96, kernel_size: int = 5) -> None:
        super().__init__()
        self.filters, self.kernel_size = filters, kernel_size
        self.convs = nn.ModuleList(
            [nn.Conv2d(1 if i == 0 else filters, filters, kernel_size) for i in range(5)]
        )
        self.deconvs = nn.ModuleList(
            [nn.ConvTranspose2d(filters, 1 if i == 4 else filters, kernel_size) for i in range(5)]
        )
        self.relu = nn.ReLU()

    def settings(self) -> dict[str, Any]:
        """The architecture settings a checkpoint records; :meth:`from_settings` rebuilds the network."""
        return {"filters": self.filters, "kernel_size": self.kernel_size}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> REDCNN:
        """The network :meth:`settings` describes; ConfigError naming the key for an unknown setting or a
        size that is not a whole number from 1 to its bound (:data:`MAX_FILTERS`, :data:`MAX_KERNEL_SIZE`), and for
        ``context_slices`` (RED-CNN takes no neighbouring slices)."""
        bounds = {"filters": MAX_FILTERS, "kernel_size": MAX_KERNEL_SIZE}
        if "context_slices" in settings:
            raise ConfigError("context_slices", "RED-CNN denoises one slice at a time (2-D); the 2.5-D input "
                              "(context_slices 3) is a CLIPDenoiser setting")
        for key, value in settings.items():
            if key not in bounds:
                raise ConfigError(key, f"unknown RED-CNN setting; expected some of {', '.join(bounds)}")
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bounds[key]:
                raise ConfigError(key, f"must be a whole number from 1 to {bounds[key]}, got {value!r}")
        return cls(**settings)

    def forward(self, x: Tensor) -> Tensor:
        shortcut_input = x
        out = self.relu(self.convs[0](x))
        out = self.relu(self.convs[1](out))
        shortcut_2 = out
        out = self.relu(self.convs[2](out))
        out = self.relu(self.convs[3](out))
        shortcut_4 = out
        out = self.relu(self.convs[4](out))
        out = self.deconvs[0](out) + shortcut_4
        out = self.deconvs[1](self.relu(out))
        out = self.deconvs[2](self.relu(out)) + shortcut_2
        out = self.deconvs[3](self.relu(out))
        out = self.deconvs[4](self.relu(out)) + shortcut_input
        return self.relu(out)
