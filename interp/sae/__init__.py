"""SAE stage: train SAEs on cached activations (sae_lens format), load and measure them.

* :mod:`interp.sae.config`: :class:`SAETrainConfig`, how ``vsfa sae train`` trains;
* :mod:`interp.sae.saes`: build, save, :func:`load_sae`, :func:`check_sae_matches`;
* :mod:`interp.sae.fit`: the training loop ``fit(sae, batches, config)``;
* :mod:`interp.sae.fast`: the sparse TopK/BatchTopK training step;
* :mod:`interp.sae.checkpoint`: resumable training checkpoints;
* :mod:`interp.sae.train`: :func:`train_sae`, the stage (stream, fit, save, measure);
* :mod:`interp.sae.metrics`: reconstruction and splice (CE/KL) metrics.

The config is imported here; the rest (sae_lens, torch) on first use.
"""

from interp.lazy import lazy_getattr
from interp.sae.config import SAETrainConfig

_LAZY = {
    "check_sae_matches": "interp.sae.saes",
    "load_sae": "interp.sae.saes",
    "train_sae": "interp.sae.train",
}

__all__ = ["SAETrainConfig", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
