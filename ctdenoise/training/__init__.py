"""Training of the CLIPDenoiser: typed YAML recipes, data split, noisy pairs, resumable loop, torchrun DDP.

``load_train_config(path)`` reads and validates a recipe (:class:`TrainConfig`); ``train(config, output_dir,
resume=...)`` runs it and returns a :class:`TrainResult` whose ``model_dir`` ``ctdenoise denoise`` can use.
"""

from ctdenoise.training.config import TrainConfig, load_train_config, train_config_from_dict
from ctdenoise.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_train_config", "train", "train_config_from_dict"]
