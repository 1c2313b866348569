"""Evaluation: metric protocols, paired low-/normal-dose test cases, methods, reports and the dose sweep.

* :mod:`~ctdenoise.metrics`: PSNR/SSIM/RMSE under named protocols (``redcnn``, ``clip-paper``, ``ldctbench``).
* :mod:`~ctdenoise.evaluate.pairing`: Mayo-2016 trees, generic low/full pairs and simulated low dose, paired by position.
* :mod:`~ctdenoise.evaluate.methods`: the low-dose input, non-local means, BM3D (optional), CLIPDenoiser, RED-CNN.
* :mod:`~ctdenoise.evaluate.report`: ``evaluate_cases`` writes metrics.csv, summary.json, summary.md and figures.
* :mod:`~ctdenoise.evaluate.sweep`: ``run_sweep``, the generalisation report over doses and Gaussian levels.
"""

from ctdenoise.evaluate.methods import Method, classical_method, clip_model_method, redcnn_method
from ctdenoise.evaluate.pairing import CaseSpec, PairedCase, mayo_cases, pair_case, pair_volumes, simulated_cases
from ctdenoise.evaluate.report import EvaluationSettings, evaluate_cases
from ctdenoise.evaluate.sweep import SweepSettings, run_sweep
from ctdenoise.metrics import (
    PROTOCOLS,
    MetricProtocol,
    compute_metrics,
    compute_volume_metrics,
    get_protocol,
)

__all__ = [
    "PROTOCOLS",
    "CaseSpec",
    "EvaluationSettings",
    "Method",
    "MetricProtocol",
    "PairedCase",
    "SweepSettings",
    "classical_method",
    "clip_model_method",
    "compute_metrics",
    "compute_volume_metrics",
    "evaluate_cases",
    "get_protocol",
    "mayo_cases",
    "pair_case",
    "pair_volumes",
    "redcnn_method",
    "run_sweep",
    "simulated_cases",
]
