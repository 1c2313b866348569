"""Evaluation: image-quality metrics under named protocols (see :mod:`ctdenoise.evaluate.metrics`)."""

from ctdenoise.evaluate.metrics import (
    PROTOCOLS,
    MetricProtocol,
    compute_metrics,
    compute_volume_metrics,
    get_protocol,
)

__all__ = ["PROTOCOLS", "MetricProtocol", "compute_metrics", "compute_volume_metrics", "get_protocol"]
