"""Throughput cost of steering: tokens/s of steered greedy generation vs plain ``generate``.

Both runs use the same inputs, greedy decoding, the KV cache and a fixed number of new tokens
(``min_new_tokens = max_new_tokens``), interleaved rep by rep so drifts in machine load hit both
alike; the ratio of the median tokens/s is printed on the last line (the bar: >= 0.95). On a
CPU the rate is per second of this process's CPU time (one thread by default), which a machine
shared with other jobs disturbs far less than wall time; on a GPU it is wall time.

    nice -n 10 .venv/bin/python bench/steer_overhead.py                      # tiny llava, CPU
    .venv/bin/python bench/steer_overhead.py --model PATH --device cuda --mode ablate
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext

import torch


def _random_sae(d_in: int, d_sae: int, hook: str, seed: int = 0):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook))
    return StandardSAE(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or hub id (default: a tiny random llava)")
    parser.add_argument("--family", default="llava", help="tiny family when no --model")
    parser.add_argument("--mode", default="add", help="a registered steering mode")
    parser.add_argument("--alpha", type=float, default=1.0, help="strength (latent 0 is steered)")
    parser.add_argument("--positions", default="all", choices=["all", "prompt", "generated"])
    parser.add_argument("--layer", type=int, default=None, help="default: the middle layer")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sae-expansion", type=int, default=8, help="d_sae / d_model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from PIL import Image

    from interp.models import load_vlm
    from interp.steer.modes import SteerSite, steering_mode

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from interp.models.tiny import build_tiny_vlm

            path = build_tiny_vlm(args.family, tmp)
        vlm = load_vlm(path, device=args.device, dtype=args.dtype)
    vlm.model.eval()
    layer = args.layer if args.layer is not None else vlm.n_layers // 2
    hook = vlm.hook_name(layer)
    sae = _random_sae(vlm.d_model, vlm.d_model * args.sae_expansion, hook).to(vlm.device)
    mode = steering_mode(args.mode)
    steer = mode.hook(SteerSite(vlm, sae, hook, args.positions), 0, args.alpha)

    images = [Image.new("RGB", (64, 64), (40 * i % 255, 90, 160)) for i in range(args.batch)]
    prompts = [f"Describe picture {i} in detail, please." for i in range(args.batch)]
    inputs = vlm.prepare(images, prompts)
    tokenizer = vlm.tokenizer

    cuda = vlm.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time

    def run(steered: bool) -> float:
        context = steer() if steered else nullcontext()
        if cuda:
            torch.cuda.synchronize()
        start = clock()
        with context, torch.no_grad():
            out = vlm.model.generate(
                **inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                do_sample=False, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
        if cuda:
            torch.cuda.synchronize()
        new = (out.shape[1] - inputs["input_ids"].shape[1]) * out.shape[0]
        return new / (clock() - start)

    run(False), run(True)  # warm-up (allocations, kernels)
    plain, steered = [], []
    for rep in range(args.reps):
        # alternate which goes first, so neither always runs on a warmer machine
        order = (False, True) if rep % 2 == 0 else (True, False)
        for flag in order:
            (steered if flag else plain).append(run(flag))
        print(f"rep {rep}: plain {plain[-1]:9.1f} tok/s  steered {steered[-1]:9.1f} tok/s")
    p, s = statistics.median(plain), statistics.median(steered)
    print(
        f"model {vlm.name_or_path} ({vlm.family.name}, d_model {vlm.d_model}, {vlm.n_layers} "
        f"layers) on {vlm.device}; {args.mode} at {hook}, positions {args.positions}, batch "
        f"{args.batch}, {args.new_tokens} new tokens, {args.reps} reps"
    )
    unit = "wall" if cuda else f"CPU ({args.threads} thread(s))"
    print(f"median tokens/s of {unit} time: plain {p:.1f}, steered {s:.1f}")
    print(f"steered/plain tokens/s ratio: {s / p:.3f}")


if __name__ == "__main__":
    main()
