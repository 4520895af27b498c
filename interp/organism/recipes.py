"""The recipes that work on the organism, as typed stage configs (measured in the docs).

Paths that each run sets hold :data:`interp.pipeline.worlds.PER_RUN`; fill them with
:func:`dataclasses.replace`, e.g. ``replace(ORGANISM_RECIPE, model=..., data=..., out=...)``.
"""

from __future__ import annotations

from interp.analysis import DiffConfig
from interp.pipeline.worlds import PER_RUN
from interp.sae import SAETrainConfig
from interp.train.config import TrainConfig

# VSFA fine-tuning recipe (measured in docs/organism.md).
ORGANISM_RECIPE = TrainConfig(
    model=PER_RUN,
    data=PER_RUN,
    out=PER_RUN,
    method="lora",
    lora_r=16,
    lora_alpha=32,
    lr=1e-3,
    max_steps=60,
    batch_size=16,
    grad_accum=1,
    warmup_ratio=0.05,
    scheduler="linear",
    device="cpu",
    dtype="float32",
    save_every=0,
)

# Latent selection (measured in docs/steering.md). The organism's VSFA shift is spread over a
# few latents of a 384-wide SAE and shows on benign prompts too (the persona is a context
# feature), so the top three by harmful-prompt increase are steered together and a rise on
# benign prompts is not penalised.
ORGANISM_SELECTION = DiffConfig(select=3, benign_penalty=0.0)

# SAE recipe of the shipped sae_checkpoints/organism-l2-topk384, trained on base and VSFA
# activations of the benchmark prompts and of the world's corpus sample: the corpus sample
# carries both personas, so the SAE sees the persona outside the benchmark too.
ORGANISM_SAE = SAETrainConfig(
    acts=[], out=PER_RUN, arch="topk", width=384, k=16, steps=600, batch_size=512, seed=0
)
