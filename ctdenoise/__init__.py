"""ctdenoise: low-dose CT denoising with a frozen CLIP ResNet encoder (CLIPDenoising, CVPR 2024)."""

from ctdenoise.errors import CTDenoiseError

__version__ = "0.1.0"

__all__ = ["CTDenoiseError", "__version__"]
