"""Tokens/s of one TopK SAE training step: the workbench's fast step vs sae_lens vs sparsify.

Same shapes for all three (default d_in=512, width 8192, k=32, batch 2048, Adam, 2 threads):
forward, backward, optimizer step. sae_lens's step is ``TopKTrainingSAE.training_forward_pass``
(what its ``SAETrainer`` runs); ours is :func:`interp.sae.fast.fast_training_step` on the same
sae_lens module. sparsify (``eai-sparsify``) lives in a separate environment: if it is not
importable here, the script re-runs its own sparsify part with ``--sparsify-python`` (default
``/tmp/benchvenv/bin/python`` when it exists), and skips it with a message otherwise.

    nice -n 10 .venv/bin/python bench/sae_step.py

The last line is ``ratio fast/sparsify: X`` (or ``ratio fast/sae_lens: X`` without sparsify).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch


def _time(step: Callable[[], None], batch: int, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def bench_sparsify(args: argparse.Namespace) -> float:
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

    return _time(step, args.batch, args.warmup, args.steps)


def _sae_lens_sae(args: argparse.Namespace):
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d_in, d_sae=args.width, k=args.k))


def bench_sae_lens(args: argparse.Namespace) -> float:
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
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return _time(step, args.batch, args.warmup, args.steps)


def bench_fast(args: argparse.Namespace) -> float:
    from interp.sae.fast import fast_training_step

    sae = _sae_lens_sae(args)
    optimizer = torch.optim.Adam(sae.parameters(), lr=args.lr)
    x = torch.randn(args.batch, args.d_in)
    fired = torch.zeros(args.width)

    def step() -> None:  # what interp.sae.train runs per batch
        out = fast_training_step(sae, x, None)
        fired.add_(torch.bincount(out.cols, minlength=args.width))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return _time(step, args.batch, args.warmup, args.steps)


def bench_matmul(args: argparse.Namespace) -> float:
    x, w = torch.randn(args.batch, args.d_in), torch.randn(args.d_in, args.width)
    return _time(lambda: x @ w, args.batch, args.warmup, args.steps)


def _sparsify_elsewhere(args: argparse.Namespace) -> float | None:
    python = args.sparsify_python
    if not python or not os.path.exists(python):
        print(
            "sparsify: skipped (eai-sparsify is not importable here; install it in a separate "
            "venv and pass --sparsify-python PATH)"
        )
        return None
    command = [python, __file__, "--only-sparsify", *sys.argv[1:]]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    if result.returncode != 0:
        print(f"sparsify: skipped ({python} failed: {result.stderr.strip().splitlines()[-1:]})")
        return None
    return float(json.loads(result.stdout.strip().splitlines()[-1])["sparsify"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    default_python = "/tmp/benchvenv/bin/python"
    parser.add_argument(
        "--sparsify-python", default=default_python if os.path.exists(default_python) else None
    )
    parser.add_argument("--only-sparsify", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    if args.only_sparsify:
        print(json.dumps({"sparsify": bench_sparsify(args)}))
        return

    print(
        f"TopK step, d_in={args.d_in} width={args.width} k={args.k} batch={args.batch} Adam, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    try:
        import sparsify  # noqa: F401

        sparsify_tps: float | None = bench_sparsify(args)
    except ImportError:
        sparsify_tps = _sparsify_elsewhere(args)
    results = {
        "dense encoder matmul only": bench_matmul(args),
        "sae_lens TopKTrainingSAE": bench_sae_lens(args),
        "interp fast step": bench_fast(args),
    }
    if sparsify_tps is not None:
        results["sparsify SparseCoder"] = sparsify_tps
    for name, value in results.items():
        print(f"{name:28s} {value:10.0f} tokens/s")
    fast = results["interp fast step"]
    print(f"ratio fast/sae_lens: {fast / results['sae_lens TopKTrainingSAE']:.2f}")
    if sparsify_tps is not None:
        print(f"ratio fast/sparsify: {fast / sparsify_tps:.2f}")


if __name__ == "__main__":
    main()
