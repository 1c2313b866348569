"""The denoising networks, their registry, CLIP weight resolution and safe checkpoints.

``CLIPDenoiser`` (frozen CLIP ResNet stem..layer3 + trainable UNet-like decoder), its ``ModelConfig``,
``REDCNN`` (the supervised baseline), the architecture registry (``create_model``, ``list_architectures``,
``get_architecture``: networks by name, as open_clip names its models), ``resolve_clip_weights`` /
``ResolvedWeights`` (strictly checked CLIP weights with a canonical sha256), ``save_checkpoint`` /
``load_checkpoint`` (one format for every architecture: safetensors + JSON, never pickle),
``count_parameters``, and the 2.5-D input's neighbour rule and warm start (``context_indices``,
``context_model_from_2d``, ``context_slices_of``).
"""

from ctdenoise.model.architectures import Architecture, create_model, get_architecture, list_architectures
from ctdenoise.model.checkpoint import export_half, load_checkpoint, read_checkpoint_config, save_checkpoint
from ctdenoise.model.config import SUPPORTED_ENCODERS, ModelConfig
from ctdenoise.model.context import context_indices, context_model_from_2d, context_slices_of
from ctdenoise.model.denoiser import CLIPDenoiser, count_parameters
from ctdenoise.model.redcnn import REDCNN
from ctdenoise.model.weights import ResolvedWeights, default_cache_dir, encoder_weights_sha256, resolve_clip_weights

__all__ = [
    "REDCNN",
    "SUPPORTED_ENCODERS",
    "Architecture",
    "CLIPDenoiser",
    "ModelConfig",
    "ResolvedWeights",
    "context_indices",
    "context_model_from_2d",
    "context_slices_of",
    "count_parameters",
    "create_model",
    "default_cache_dir",
    "encoder_weights_sha256",
    "export_half",
    "get_architecture",
    "list_architectures",
    "load_checkpoint",
    "read_checkpoint_config",
    "resolve_clip_weights",
    "save_checkpoint",
]
