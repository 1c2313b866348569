"""Baseline denoisers evaluated next to the CLIPDenoiser: the supervised RED-CNN (Chen et al. 2017)."""

from ctdenoise.evaluate.baselines.redcnn import REDCNN, load_redcnn, redcnn_denoise_hu, save_redcnn

__all__ = ["REDCNN", "load_redcnn", "redcnn_denoise_hu", "save_redcnn"]
