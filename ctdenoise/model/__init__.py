"""The CLIPDenoising network, CLIP weight resolution and safe checkpoints.

``CLIPDenoiser`` (frozen CLIP ResNet stem..layer3 + trainable UNet-like decoder), its ``ModelConfig``,
``resolve_clip_weights`` / ``ResolvedWeights`` (strictly checked CLIP weights with a canonical sha256),
``save_checkpoint`` / ``load_checkpoint`` (safetensors + JSON, never pickle) and ``count_parameters``.
"""

from ctdenoise.model.checkpoint import export_half, load_checkpoint, read_checkpoint_config, save_checkpoint
from ctdenoise.model.config import SUPPORTED_ENCODERS, ModelConfig
from ctdenoise.model.denoiser import CLIPDenoiser, count_parameters
from ctdenoise.model.weights import ResolvedWeights, default_cache_dir, encoder_weights_sha256, resolve_clip_weights

__all__ = [
    "SUPPORTED_ENCODERS",
    "CLIPDenoiser",
    "ModelConfig",
    "ResolvedWeights",
    "count_parameters",
    "default_cache_dir",
    "encoder_weights_sha256",
    "export_half",
    "load_checkpoint",
    "read_checkpoint_config",
    "resolve_clip_weights",
    "save_checkpoint",
]
