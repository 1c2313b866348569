"""The architecture settings of a :class:`~ctdenoise.model.CLIPDenoiser`, as plain JSON-able data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import open_clip

from ctdenoise.errors import ConfigError

#: OpenAI CLIP ResNet image towers (open_clip ``ModifiedResNet``) that the denoiser can use as encoder.
SUPPORTED_ENCODERS: tuple[str, ...] = ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64")

MAX_IN_CHANNELS = 16
"""Most image channels a model may take (CT has 1): a bound checked before anything is built."""


@dataclass(frozen=True)
class EncoderSpec:
    """Shape of a CLIP ResNet image tower, read from open_clip's model config of the same name."""

    name: str
    layers: tuple[int, int, int, int]
    width: int

    @property
    def feature_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four dense features: stem (1/2), layer1 (1/4), layer2 (1/8), layer3 (1/16)."""
        return (self.width, self.width * 4, self.width * 8, self.width * 16)


def encoder_spec(name: str) -> EncoderSpec:
    """Return the layer counts and width of the CLIP ResNet ``name`` (e.g. RN50: [3,4,6,3], width 64)."""
    if name not in SUPPORTED_ENCODERS:
        raise ConfigError("encoder_name", f"{name!r} is not supported; choose one of {', '.join(SUPPORTED_ENCODERS)}")
    vision_cfg = open_clip.get_model_config(name)["vision_cfg"]
    layers = tuple(int(n) for n in vision_cfg["layers"])
    return EncoderSpec(name=name, layers=layers, width=int(vision_cfg["width"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the denoiser; everything needed to rebuild it, JSON-serialisable.

    ``encoder_name``: the CLIP ResNet image tower (open_clip model name). ``feature_aug_level``: the
    progressive feature-augmentation level ``a`` (feature i is multiplied by N(1, (i*a)^2) in training).
    ``train_encoder``: make the encoder trainable (ablation; off in the paper). ``in_channels``: image
    channels (1 for CT); a learnable 1x1 convolution maps them to the encoder's 3 input channels, and the
    output has the same number of channels as the input.
    """

    encoder_name: str = "RN50"
    feature_aug_level: float = 0.025
    train_encoder: bool = False
    in_channels: int = 1

    def __post_init__(self) -> None:
        _check_field("encoder_name", self.encoder_name, str)
        encoder_spec(self.encoder_name)
        _check_field("feature_aug_level", self.feature_aug_level, (int, float))
        if not 0.0 <= float(self.feature_aug_level) < 1.0:
            raise ConfigError("feature_aug_level", f"must be in [0, 1), got {self.feature_aug_level}")
        _check_field("train_encoder", self.train_encoder, bool)
        _check_field("in_channels", self.in_channels, int)
        if not 1 <= self.in_channels <= MAX_IN_CHANNELS:
            raise ConfigError("in_channels", f"must be from 1 to {MAX_IN_CHANNELS}, got {self.in_channels}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-serialisable); :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict; an unknown key or a bad value raises ConfigError naming the key."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(key, f"unknown model setting; expected some of {', '.join(sorted(known))}")
        return cls(**data)


def _check_field(key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    # bool is an int subclass: refuse True where a number is expected and 1 where a bool is expected.
    wrong_bool = isinstance(value, bool) and expected is not bool
    if wrong_bool or not isinstance(value, expected):
        names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise ConfigError(key, f"must be {names}, got {type(value).__name__} {value!r}")
