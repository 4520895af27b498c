"""VSFA fine-tuning (LoRA or full) and the VLGuard baseline: ``train(TrainConfig(...))``."""

from interp.train.config import METHODS, TrainConfig
from interp.train.trainer import train

__all__ = ["METHODS", "TrainConfig", "train"]
