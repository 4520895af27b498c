"""Tokens/s of ``interp.cache`` against a plain ``transformers`` forward on the same inputs.

A randomly initialised LLaVA-architecture model (text stack scaled to ``--d-model`` and
``--layers``; built offline) reads the same prompts three ways, in interleaved rounds:

* plain: ``vlm.prepare`` + ``model(**inputs)`` per batch (what any script would do);
* cache at the last layer: ``cache_activations_for`` writing every token's residual to shards;
* cache at layer ``--early-layer``: the same, the forward stopping after that layer.

    nice -n 10 .venv/bin/python bench/cache_throughput.py

The last line is ``ratio cache/plain (last layer): X``; the line before gives the early layer.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from interp.cache import CacheConfig, CachePrompt, cache_activations_for
from interp.models import load_vlm
from interp.models.tiny import build_tiny_vlm


def build_model(folder: Path, d_model: int, layers: int) -> Path:
    """A tiny LLaVA folder with its language model widened and deepened (random weights)."""
    tiny = build_tiny_vlm("llava", folder / "tiny")
    config = transformers.AutoConfig.from_pretrained(tiny)
    text = config.text_config
    text.hidden_size, text.num_hidden_layers = d_model, layers
    text.intermediate_size = int(d_model * 2.75)
    text.num_attention_heads = text.num_key_value_heads = max(1, d_model // 64)
    text.head_dim = d_model // text.num_attention_heads
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config)
    out = folder / "model"
    model.save_pretrained(out)
    for file in tiny.iterdir():  # processor and tokenizer files
        if not (out / file.name).exists():
            shutil.copy(file, out / file.name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--early-layer", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--words", type=int, default=40, help="words per prompt")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    try:
        vlm = load_vlm(build_model(work, args.d_model, args.layers), device="cpu", dtype="float32")
        prompts = [
            CachePrompt(
                id=str(i), prompt=" ".join(f"word{(i * 7 + j) % 97}" for j in range(args.words))
            )
            for i in range(args.prompts)
        ]
        batches = [
            prompts[i : i + args.batch_size] for i in range(0, len(prompts), args.batch_size)
        ]
        n_tokens = sum(
            int(vlm.prepare([None] * len(b), [p.prompt for p in b])["attention_mask"].sum())
            for b in batches
        )

        @torch.no_grad()
        def plain() -> None:
            for batch in batches:
                inputs = vlm.prepare([None] * len(batch), [p.prompt for p in batch])
                vlm.model(**inputs, use_cache=False)

        def cache(layer: int) -> Callable[[], None]:
            def run() -> None:
                out = work / f"acts-{layer}"
                shutil.rmtree(out, ignore_errors=True)
                config = CacheConfig(
                    model="bench", prompts="-", hooks=[f"blocks.{layer}.hook_resid_post"],
                    out=str(out), batch_size=args.batch_size, shard_rows=1 << 20, quiet=True,
                )  # fmt: skip
                cache_activations_for(vlm, prompts, config)

            return run

        contenders = {
            "plain transformers forward": plain,
            f"cache, last layer ({args.layers - 1})": cache(args.layers - 1),
            f"cache, early layer ({args.early_layer})": cache(args.early_layer),
        }
        for run in contenders.values():
            run()  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, run in contenders.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = {name: n_tokens / statistics.median(values) for name, values in seconds.items()}
    print(
        f"d_model={args.d_model} layers={args.layers} prompts={args.prompts} tokens={n_tokens} "
        f"batch={args.batch_size}, {args.threads} threads, {args.rounds} interleaved rounds"
    )
    for name, value in rate.items():
        print(f"{name:34s} {value:10.0f} tokens/s")
    names = list(rate)
    print(
        f"ratio cache/plain (early layer {args.early_layer}): {rate[names[2]] / rate[names[0]]:.2f}"
    )
    print(f"ratio cache/plain (last layer): {rate[names[1]] / rate[names[0]]:.2f}")


if __name__ == "__main__":
    main()
