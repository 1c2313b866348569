"""The names the inference settings take (devices, precisions, backends, strengths), importable without torch.

:class:`ctdenoise.runtime.settings.InferenceSettings` validates settings against these, and the command line
offers them as choices: keeping them here lets ``ctdenoise --help`` and ``ctdenoise serve --status`` start
without importing torch.
"""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
BACKEND_CHOICES = ("auto", "torch", "onnxruntime")

#: The strength every entry point uses when the user does not choose one: the CLI (``--strength``), the
#: MONAI transforms and the bundle. 0 returns the input unchanged, 1 the model's output (see
#: :func:`ctdenoise.runtime.denoise.blend_strength`).
DEFAULT_STRENGTH = 1.0

AUTO_STRENGTH = "auto"
"""The strength value that asks for the model folder's strength table (:mod:`ctdenoise.strength_table`)."""

STRENGTH_PRESETS = ("low", "medium", "high")
"""The strength values that name a preset of the model folder's ``presets.json`` (:mod:`ctdenoise.strength_presets`):
the strength that removes 30, 50 and 70 % of the noise of the image-quality phantom at a quarter dose."""
