"""The argument checks the noise models share."""

from __future__ import annotations

import numpy as np

from ctdenoise.errors import ConfigError


def check_positive(key: str, value: float, upper: float | None = None) -> None:
    """ConfigError naming ``key`` unless ``value`` is finite, positive and, when ``upper`` is given, at most ``upper``."""
    if not np.isfinite(value) or value <= 0 or (upper is not None and value > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise ConfigError(key, f"must be positive{bound}, got {value!r}")
