"""VSFA fine-tuning (LoRA or full) and the VLGuard baseline: ``train(TrainConfig(...))``.

:func:`train` is imported on first use, so reading the config (the CLI does at start-up) does
not import torch.
"""

from interp.lazy import lazy_getattr
from interp.train.config import METHODS, TrainConfig

__all__ = ["METHODS", "TrainConfig", "train"]
__getattr__ = lazy_getattr(__name__, {"train": "interp.train.trainer"})
