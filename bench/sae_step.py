"""Tokens/s of one TopK SAE training step: the workbench's fast step vs sae_lens vs sparsify.

Same shapes for all three (default d_in=512, width 8192, k=32, batch 2048, Adam, 2 threads):
forward, backward, optimizer step. sae_lens's step is ``TopKTrainingSAE.training_forward_pass``
(what its ``SAETrainer`` runs); ours is :func:`interp.sae.fast.fast_training_step` on the same
sae_lens module. sparsify (``eai-sparsify``) lives in a separate environment with the same torch:
if it is not importable here, ``--sparsify-site`` (default
``/tmp/benchvenv/lib/python3.11/site-packages`` when it exists) is appended to ``sys.path`` so
it runs in this process beside the others; without it, sparsify is skipped with a message.

The fast step trains with fit's optimizer (:func:`interp.sae.fast.make_adam`, torch's fused
Adam); sae_lens's and sparsify's with plain ``torch.optim.Adam``, as their trainers do. The
reference "dense encoder matmul only" is the one ``[batch, d_in] @ [d_in, width]`` product every
step needs; ``ratio fast/dense encoder matmul`` is the fast step's tokens/s over its tokens/s.
``--bf16-select`` adds the fast step with ``select_dtype=torch.bfloat16``.

The machine may be shared, so the contenders are timed in interleaved rounds (each round runs
every contender for ``--steps`` steps) and the median round is reported.

    nice -n 10 .venv/bin/python bench/sae_step.py

The last line is ``ratio fast/sparsify: X`` (``ratio fast/sae_lens: X`` without sparsify).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

Step = Callable[[], None]


def _time(step: Step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def bench_sparsify(args: argparse.Namespace) -> Step:
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    sae = SparseCoder(args.d_in, SparseCoderConfig(num_latents=args.width, k=args.k))
    optimizer = torch.optim.Adam(sae.parameters(), lr=args.lr)
    x = torch.randn(args.batch, args.d_in)

    def step() -> None:  # what sparsify's Trainer does per batch
        out = sae(x, dead_mask=None)
        (out.fvu + out.auxk_loss).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        sae.set_decoder_norm_to_unit_norm()

    return step


def _sae_lens_sae(args: argparse.Namespace):
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d_in, d_sae=args.width, k=args.k))


def _update(sae: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward, gradient clipping at norm 1 and an Adam step (both trainers do this)."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()


def bench_sae_lens(args: argparse.Namespace) -> Step:
    from sae_lens.saes.sae import TrainStepInput

    sae = _sae_lens_sae(args)
    optimizer = torch.optim.Adam(sae.parameters(), lr=args.lr)
    x = torch.randn(args.batch, args.d_in)

    def step() -> None:  # what sae_lens's SAETrainer._train_step does
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients={},
                dead_neuron_mask=None,
                n_training_steps=0,
                is_logging_step=False,
            )
        )
        out.feature_acts.bool().float().sum(-2)  # the trainer's firing statistics
        _update(sae, optimizer, out.loss)

    return step


def bench_fast(args: argparse.Namespace, select_dtype: torch.dtype | None = None) -> Step:
    from interp.sae.fast import fast_training_step, make_adam

    sae = _sae_lens_sae(args)
    optimizer = make_adam(sae.parameters(), args.lr)  # fit's optimizer: fused Adam
    x = torch.randn(args.batch, args.d_in)
    fired = torch.zeros(args.width)

    def step() -> None:  # what interp.sae.fit runs per batch
        out = fast_training_step(sae, x, None, select_dtype=select_dtype)
        fired.add_(torch.bincount(out.cols, minlength=args.width))
        _update(sae, optimizer, out.loss)

    return step


def bench_matmul(args: argparse.Namespace) -> Step:
    x, w = torch.randn(args.batch, args.d_in), torch.randn(args.d_in, args.width)
    return lambda: x @ w  # noqa: E731


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="steps per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--bf16-select",
        action="store_true",
        help="also time the fast step choosing its latents from bf16 scores (select_dtype)",
    )
    default_site = "/tmp/benchvenv/lib/python3.11/site-packages"
    parser.add_argument(
        "--sparsify-site", default=default_site if os.path.isdir(default_site) else None
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"TopK step, d_in={args.d_in} width={args.width} k={args.k} batch={args.batch} Adam, "
        f"{args.threads} threads, torch {torch.__version__}, {args.rounds} interleaved rounds"
    )
    contenders: dict[str, Step] = {
        "dense encoder matmul only": bench_matmul(args),
        "sae_lens TopKTrainingSAE": bench_sae_lens(args),
        "interp fast step": bench_fast(args),
    }
    if args.bf16_select:
        contenders["interp fast step, bf16 select"] = bench_fast(args, torch.bfloat16)
    try:
        if importlib.util.find_spec("sparsify") is None and args.sparsify_site:
            sys.path.append(args.sparsify_site)
        contenders["sparsify SparseCoder"] = bench_sparsify(args)
    except ImportError as error:
        print(
            f"sparsify: skipped ({error}); install eai-sparsify (same torch) in a separate venv "
            "and pass --sparsify-site its site-packages"
        )
    for step in contenders.values():
        for _ in range(args.warmup):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, step in contenders.items():
            seconds[name].append(_time(step, args.steps))
    rate = {
        name: args.batch * args.steps / statistics.median(values)
        for name, values in seconds.items()
    }
    for name, value in rate.items():
        print(f"{name:28s} {value:10.0f} tokens/s")
    fast = rate["interp fast step"]
    dense = rate["dense encoder matmul only"]
    if args.bf16_select:
        bf16 = rate["interp fast step, bf16 select"]
        print(f"ratio fast bf16 select/dense encoder matmul: {bf16 / dense:.2f}")
    print(f"ratio fast/dense encoder matmul: {fast / dense:.2f}")
    print(f"ratio fast/sae_lens: {fast / rate['sae_lens TopKTrainingSAE']:.2f}")
    if "sparsify SparseCoder" in rate:
        print(f"ratio fast/sparsify: {fast / rate['sparsify SparseCoder']:.2f}")


if __name__ == "__main__":
    main()
