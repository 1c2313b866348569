"""The architectures a checkpoint can hold, by name (as open_clip names its models): each knows how to rebuild
its network from the settings ``config.json`` records and which settings to record for a network.

* ``clipdenoiser``: :class:`~ctdenoise.model.CLIPDenoiser` (settings: :class:`~ctdenoise.model.ModelConfig`
  and the padding multiple). A checkpoint whose architecture has no name is one of these: the format named
  no other before RED-CNN joined it.
* ``redcnn``: :class:`~ctdenoise.model.redcnn.REDCNN`, the supervised baseline (settings: ``filters``,
  ``kernel_size``).

Names are matched without regard to case (checkpoints written before this registry say ``CLIPDenoiser``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ctdenoise.errors import ConfigError
from ctdenoise.model.config import ModelConfig
from ctdenoise.model.denoiser import PAD_MULTIPLE, CLIPDenoiser
from ctdenoise.model.redcnn import REDCNN
from ctdenoise.model_files import DEFAULT_ARCHITECTURE


@dataclass(frozen=True)
class Architecture:
    """One entry of the registry: its ``name``, the network class, and the two halves of its settings."""

    name: str
    model_class: type[nn.Module]
    build: Callable[[dict[str, Any]], nn.Module]
    """The network for the settings a checkpoint recorded (without ``name``); ConfigError naming a bad key."""
    settings: Callable[[Any], dict[str, Any]]
    """The settings to record for a network of this architecture (JSON-able)."""


def _build_clipdenoiser(settings: dict[str, Any]) -> CLIPDenoiser:
    recorded = dict(settings)
    pad_multiple = recorded.pop("pad_multiple", PAD_MULTIPLE)
    if pad_multiple != PAD_MULTIPLE:
        raise ConfigError("pad_multiple", f"this CLIPDenoiser pads to multiples of {PAD_MULTIPLE}, not {pad_multiple!r}")
    return CLIPDenoiser(ModelConfig.from_dict(recorded))


def _clipdenoiser_settings(model: CLIPDenoiser) -> dict[str, Any]:
    return {"pad_multiple": PAD_MULTIPLE, **model.config.to_dict()}


ARCHITECTURES: dict[str, Architecture] = {
    entry.name: entry
    for entry in (
        Architecture(DEFAULT_ARCHITECTURE, CLIPDenoiser, _build_clipdenoiser, _clipdenoiser_settings),
        Architecture("redcnn", REDCNN, REDCNN.from_settings, REDCNN.settings),
    )
}


def list_architectures() -> list[str]:
    """The names of the registered architectures."""
    return sorted(ARCHITECTURES)


def get_architecture(name: str | None) -> Architecture:
    """The architecture called ``name`` (any case; None is :data:`DEFAULT_ARCHITECTURE`); ConfigError listing
    the registered names otherwise."""
    key = DEFAULT_ARCHITECTURE if name is None else str(name).lower()
    if key not in ARCHITECTURES:
        raise ConfigError("architecture.name", f"{name!r} is not a known architecture; known: {', '.join(list_architectures())}")
    return ARCHITECTURES[key]


def architecture_of(model: nn.Module) -> Architecture:
    """The registered architecture ``model`` is a network of; ConfigError for an unregistered class."""
    for entry in ARCHITECTURES.values():
        if isinstance(model, entry.model_class):
            return entry
    raise ConfigError("architecture", f"{type(model).__name__} is not a registered architecture ({', '.join(list_architectures())})")


def create_model(name: str | None = None, **settings: Any) -> nn.Module:
    """A new network of the architecture ``name`` with ``settings`` (defaults for those not given), in
    training mode, e.g. ``create_model("redcnn")`` or ``create_model("clipdenoiser", encoder_name="RN101")``."""
    return get_architecture(name).build(settings)
