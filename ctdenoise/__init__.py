"""ctdenoise: low-dose CT denoising with a frozen CLIP ResNet encoder (CLIPDenoising, CVPR 2024).

The front door for Python users (docs: Python API)::

    import ctdenoise

    model = ctdenoise.load_model()                        # the shipped default model, or a checkpoint folder
    volume = ctdenoise.read_volume("scan/")               # a DICOM series folder, NIfTI, NRRD or MHA
    denoised = ctdenoise.denoise_volume(model, volume, ctdenoise.InferenceSettings(strength=0.8))
    ctdenoise.write_volume(volume, denoised.hu, "out/")

These names are imported on first use (PEP 562), so ``import ctdenoise`` itself imports neither torch nor
pydicom: a script that only asks for ``ctdenoise.__version__`` starts at once.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ctdenoise._version import __version__
from ctdenoise.errors import CTDenoiseError

if TYPE_CHECKING:
    from ctdenoise.io import Volume, read_volume, write_volume
    from ctdenoise.registry import load_model
    from ctdenoise.runtime.denoise import denoise_volume
    from ctdenoise.runtime.settings import InferenceSettings

#: The front door: each name and the module it is imported from on first use.
LAZY_EXPORTS = {
    "load_model": "ctdenoise.registry",
    "read_volume": "ctdenoise.io",
    "denoise_volume": "ctdenoise.runtime.denoise",
    "write_volume": "ctdenoise.io",
    "InferenceSettings": "ctdenoise.runtime.settings",
    "Volume": "ctdenoise.io",
}

__all__ = ["CTDenoiseError", "InferenceSettings", "Volume", "__version__", "denoise_volume", "load_model", "read_volume",
           "write_volume"]


def __getattr__(name: str) -> Any:
    """Import a front-door name from its module the first time it is asked for (PEP 562)."""
    if name not in LAZY_EXPORTS:
        raise AttributeError(f"module 'ctdenoise' has no attribute {name!r}")
    value = getattr(import_module(LAZY_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY_EXPORTS})
