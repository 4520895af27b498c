"""VSFA interpretability workbench: train, evaluate, cache, SAE, diff, steer and show VLM safety."""

__version__ = "0.1.0"
