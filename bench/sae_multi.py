"""Several SAEs from one pass over the activations against one run per SAE, on the same data.

Synthetic activations (``--hooks`` hooks of ``--d-in`` columns, ``--rows`` rows in shards of
``--shard-rows``) are written once to a temporary folder. Each round trains the same SAEs
(every hook x every ``--widths`` value, TopK ``--k``, one epoch of ``--batch-size`` rows, no
CE/KL splice) two ways: ``interp.sae.multi.train_saes`` (each batch read once for all hooks, the
SAEs stepped in turns) and one ``interp.sae.train.train_sae`` per SAE (each run streams the
folders on its own). The two alternate for ``--rounds`` rounds; medians are reported. The clock
is the process's CPU time by default (``--clock cpu``, one thread), which other jobs on a
shared machine disturb far less than wall time.

    nice -n 10 .venv/bin/python bench/sae_multi.py
    .venv/bin/python bench/sae_multi.py --device cuda --clock wall --d-in 4096 --widths 16384

The last line is ``ratio one pass / separate runs: X`` (time of the N SAEs from one pass over
the time of the N separate runs; below 1 is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hooks", type=int, default=3)
    parser.add_argument("--widths", default="1024", help="comma separated")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--rows", type=int, default=32768)
    parser.add_argument("--shard-rows", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--buffer-rows", type=int, default=16384)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    return parser.parse_args()


def _acts(folder: Path, args: argparse.Namespace) -> tuple[Path, list[str]]:
    from interp.cache import write_activations

    generator = torch.Generator().manual_seed(0)
    mix = torch.randn(args.d_in, args.d_in, generator=generator) / args.d_in**0.5
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(args.hooks)]
    rows = torch.randn(args.rows, args.d_in, generator=generator) @ mix
    tensors = {}
    for hook in hooks:
        tensors[hook] = rows.clone()
        rows = torch.tanh(rows @ mix) + 0.1 * torch.randn(rows.shape, generator=generator)
    return write_activations(folder, tensors, shard_rows=args.shard_rows), hooks


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    from interp.sae.config import SAETrainConfig
    from interp.sae.multi import sae_specs, train_saes
    from interp.sae.train import train_sae

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    widths = [int(w) for w in args.widths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        acts, hooks = _acts(Path(tmp) / "acts", args)

        def config(out: str) -> SAETrainConfig:
            return SAETrainConfig(
                acts=[str(acts)], out=out, hook_name=hooks, width=widths, k=args.k,
                batch_size=args.batch_size, buffer_rows=args.buffer_rows, eval_prompts=0,
                eval_rows=4096, device=args.device, quiet=True,
            )  # fmt: skip

        specs = sae_specs(config(tmp), [])
        print(f"{len(specs)} SAEs ({len(hooks)} hooks x widths {widths}, k {args.k}), d_in "
              f"{args.d_in}, {args.rows} rows, batch {args.batch_size}, {args.threads} thread(s),"
              f" {args.clock} clock")  # fmt: skip
        train_sae(replace(specs[0].config(config(str(Path(tmp) / "warm"))), steps=1))
        joint, separate = [], []
        for index in range(args.rounds):
            base = Path(tmp) / f"round{index}"
            start = clock()
            train_saes(config(str(base / "joint")))
            joint.append(clock() - start)
            start = clock()
            for spec in specs:
                sub = spec.config(config(str(base / "separate")))
                train_sae(sub)
            separate.append(clock() - start)
            print(f"round {index}: one pass {joint[-1]:.2f} s, separate runs {separate[-1]:.2f} s")
        one, many = statistics.median(joint), statistics.median(separate)
        tokens = args.rows * len(specs)
        print(f"one pass: {one:.2f} s ({tokens / one:,.0f} SAE-rows/s); separate runs: "
              f"{many:.2f} s ({tokens / many:,.0f} SAE-rows/s)")  # fmt: skip
        print(f"ratio one pass / separate runs: {one / many:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
