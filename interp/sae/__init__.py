"""SAE training on cached activations (sae_lens format) and SAE quality metrics."""

from interp.sae.train import SAETrainConfig, check_sae_matches, load_sae, train_sae

__all__ = ["SAETrainConfig", "check_sae_matches", "load_sae", "train_sae"]
