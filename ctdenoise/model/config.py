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

CONTEXT_SLICES: tuple[int, ...] = (1, 3)
"""The numbers of adjacent axial slices a model may take as input: 1 (2-D) or 3 (2.5-D: below, centre, above)."""


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
    output has ``in_channels`` channels. ``context_slices``: adjacent axial slices in the input, 1 (2-D) or 3
    (2.5-D: the slices below, at and above the one denoised, ``in_channels`` each, in that order along the
    channel axis); the output is always the centre slice's ``in_channels``. A 2-D config's :meth:`to_dict`
    leaves ``context_slices`` out, so its ``config.json`` is what it was before the field existed.
    """

    encoder_name: str = "RN50"
    feature_aug_level: float = 0.025
    train_encoder: bool = False
    in_channels: int = 1
    context_slices: int = 1

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
        _check_field("context_slices", self.context_slices, int)
        if self.context_slices not in CONTEXT_SLICES:
            raise ConfigError(
                "context_slices", f"must be one of {', '.join(map(str, CONTEXT_SLICES))} (odd: the slice denoised is "
                f"the centre one), got {self.context_slices}"
            )

    @property
    def input_channels(self) -> int:
        """Channels of the network's input: ``in_channels`` per slice times ``context_slices``."""
        return self.in_channels * self.context_slices

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-serialisable); :meth:`from_dict` inverts it. ``context_slices`` is left
        out when it is 1 (its default), so a 2-D model's recorded settings are those it had before the field."""
        data = asdict(self)
        if self.context_slices == 1:
            del data["context_slices"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict; an unknown key or a bad value raises ConfigError naming the key. A missing
        key takes its default (a config written before ``context_slices`` existed is a 2-D one)."""
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
