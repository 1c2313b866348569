"""ctdenoise: low-dose CT denoising with a frozen CLIP ResNet encoder (CLIPDenoising, CVPR 2024)."""

from ctdenoise._version import __version__
from ctdenoise.errors import CTDenoiseError

__all__ = ["CTDenoiseError", "__version__"]
