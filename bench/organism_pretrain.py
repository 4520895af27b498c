"""Tokens/s of the organism's language pretraining step: the new step against the legacy one.

Both steps train a freshly built organism (same seed, same warmed-up-free encoder frozen, same
AdamW settings) on chats drawn the way each pretraining draws them; the rate counts real
(non-padding) tokens per second of wall time, forward + backward + clip + AdamW step + collation
included:

* legacy: float32, SDPA attention, logits at every position, length buckets of 8 batches (the
  step that built the shipped base, ``--legacy-step``);
* new: bfloat16 autocast, eager attention, logits only at labelled positions, fused AdamW,
  length buckets of 32 batches, the corpus drawing scenes from pre-split threat/benign lists
  (the default).

The two run in interleaved rounds (``--rounds``, ``--steps`` each); medians are reported. With
``--clock cpu`` (the default) the rate is per second of the process's CPU time, which other jobs
on a shared machine disturb far less than wall time (``--clock wall``; use it with
``--threads 2`` on an idle machine).

    nice -n 10 .venv/bin/python bench/organism_pretrain.py                  # 1 thread, CPU time
    .venv/bin/python bench/organism_pretrain.py --threads 2 --clock wall

The last line is ``ratio new/legacy tokens/s: X``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time

import torch

from interp.organism import model as organism_model
from interp.organism import pretrain as P
from interp.organism.config import PretrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenes-per-kind", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = {
        "legacy": PretrainConfig(legacy_step=True, scenes_per_kind=args.scenes_per_kind),
        "new": PretrainConfig(scenes_per_kind=args.scenes_per_kind, corpus_version=1),
    }
    sizes = configs["new"].model_config()
    processor = organism_model.build_processor(sizes)
    tokenizer = processor.tokenizer
    pool = P.build_pool(processor, 0, args.scenes_per_kind, 48, 3)
    image_tokens = organism_model.image_tokens_per_image(sizes)
    # the legacy step drew every turn's scene from the plain list (scanning it each time)
    pools = {"legacy": dataclasses.replace(pool, scenes=list(pool.scenes)), "new": pool}
    runs = {}
    for name, config in configs.items():
        model = organism_model.build_model(tokenizer, sizes, seed=0)
        model.train()
        model.model.vision_tower.requires_grad_(False)
        loss_of, attention = P.training_step(config)
        model.set_attn_implementation(attention)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.lr,
            betas=(0.9, 0.98),
            fused=None if config.legacy_step else True,
        )
        runs[name] = (config, model, loss_of, optimizer, random.Random(0), [], pools[name])

    def step(name: str) -> int:
        config, model, loss_of, optimizer, rng, batches, scenes = runs[name]
        if not batches:
            batches += P.length_buckets(rng, scenes, config)
        batch = P.collate(tokenizer, batches.pop(), scenes, image_tokens)
        loss = loss_of(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return int(batch["attention_mask"].sum())

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for name in runs:  # warm-up: first calls allocate and pick kernels
        for _ in range(3):
            step(name)
    for _ in range(args.rounds):
        for name in runs:
            started, tokens = clock(), 0
            for _ in range(args.steps):
                tokens += step(name)
            rates[name].append(tokens / (clock() - started))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        spread = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"{name:7s} {value:9,.0f} tokens/s per {args.clock} second (rounds: {spread})")
    print(f"ratio new/legacy tokens/s: {medians['new'] / medians['legacy']:.2f}")


if __name__ == "__main__":
    main()
