"""RED-CNN (Chen et al., "Low-dose CT with a residual encoder-decoder convolutional neural network",
IEEE TMI 2017), the supervised baseline of the LDCT literature, and its safe checkpoint format.

Architecture as in the paper and its reference code: five 5x5 convolutions (valid padding, 96 filters,
ReLU) and five 5x5 transposed convolutions back to the input size, with three residual shortcuts
(input -> output, after conv2 -> after deconv3, after conv4 -> after deconv1) and a final ReLU. It works
on the model scale ``(HU + 1024) / 4096`` like the CLIPDenoiser (:mod:`ctdenoise.intensity`), so both
are trained on identical pairs and evaluated by the same harness. About 1.85 M parameters.

Checkpoints are a folder with ``model.safetensors`` and ``config.json`` (format ``ctdenoise-redcnn``,
architecture, sha256 of the tensors, training summary); nothing is unpickled and a modified tensor file
is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ctdenoise.errors import CheckpointError
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.io.atomic import atomic_write_file

FORMAT_NAME = "ctdenoise-redcnn"
TENSORS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_redcnn(model: REDCNN, directory: Path | str, training_summary: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a ``ctdenoise-redcnn`` checkpoint folder and return the folder.

    Each file is written to a temporary file and renamed into place, the config last, so a reader sees
    either the old or the new checkpoint, never a half-written one.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = directory / TENSORS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_file(tensors, lambda tmp: save_file(state, str(tmp)))
    config = {
        "format": FORMAT_NAME,
        "architecture": {"name": "redcnn", "filters": model.filters, "kernel_size": model.kernel_size},
        "normalisation": "(HU+1024)/4096 clip [-1024,3072]",
        "tensors": {"file": TENSORS_FILE, "sha256": _sha256(tensors)},
        "training_summary": training_summary or {},
    }
    text = json.dumps(config, indent=2)
    atomic_write_file(directory / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return directory


def is_redcnn_checkpoint(directory: Path | str) -> bool:
    """True when ``directory`` holds a ``ctdenoise-redcnn`` config."""
    config = Path(directory) / CONFIG_FILE
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def load_redcnn(directory: Path | str) -> tuple[REDCNN, dict[str, Any]]:
    """Load a RED-CNN checkpoint folder (eval mode) and its config; CheckpointError names what is wrong."""
    directory = Path(directory)
    if not is_redcnn_checkpoint(directory):
        raise CheckpointError(f"{directory}: not a RED-CNN checkpoint folder ({CONFIG_FILE} with format {FORMAT_NAME})")
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    tensors = directory / config["tensors"]["file"]
    if not tensors.is_file():
        raise CheckpointError(f"{tensors}: tensor file missing")
    if _sha256(tensors) != config["tensors"]["sha256"]:
        raise CheckpointError(f"{tensors}: sha256 differs from the one recorded in {CONFIG_FILE}; file modified or corrupted")
    arch = config["architecture"]
    model = REDCNN(filters=int(arch["filters"]), kernel_size=int(arch["kernel_size"]))
    try:
        model.load_state_dict(load_file(str(tensors)))
    except RuntimeError as exc:
        raise CheckpointError(f"{tensors}: tensors do not match the recorded architecture: {exc}") from None
    return model.eval(), config


def redcnn_denoise_hu(model: nn.Module, hu: np.ndarray, device: str = "cpu", batch_size: int = 4) -> np.ndarray:
    """Denoise (N, H, W) HU slices with ``model`` on the model scale; returns float32 HU of the same shape."""
    model = model.to(device).eval()
    out = np.empty(hu.shape, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, hu.shape[0], batch_size):
            batch = torch.from_numpy(hu_to_unit(np.asarray(hu[start : start + batch_size], np.float32)))
            clean = model(batch[:, None].to(device))[:, 0]
            out[start : start + batch_size] = unit_to_hu(clean.float().cpu().numpy())
    return out
