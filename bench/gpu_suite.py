"""The GPU suite: real-size random-weight VLMs in bf16 on one GPU, through the workbench's code.

Offline: LLaVA-1.5-7B (CLIP ViT-L/336 + Llama-7B) and Qwen2.5-VL-7B are built from their
configs with random weights (nothing is downloaded); their tokenizer is a BPE tokenizer trained
here on a generated corpus with the family's special tokens and chat template (the embedding
keeps the real vocabulary size). Each architecture is measured with the workbench's own paths:

* caching (``interp.cache.cache_activations_for``) at the middle and the last layer against a
  plain ``model(**inputs)`` forward on the same batches (tokens/s);
* steering overhead in ``generate`` (``interp.steer.modes``, mode ``add``; batch 16, 128 new
  tokens, KV cache on) against plain ``generate``;
* evaluation generation (``interp.eval.generation.generate_responses``) tokens/s;
* one LoRA training step (``interp.train.model.prepare_model`` + the trainer's backward; AdamW),
  tokens/s and peak memory;

then one TopK SAE training step at d_in 4096, width 65,536, k 64
(``interp.sae.fast.fast_training_step``, what ``interp.sae.fit`` runs per batch) against
EleutherAI's sparsify ``SparseCoder`` in the same process when it is importable
(``--sparsify-site``), else against the dense encoder matmul alone.

    .venv/bin/python bench/gpu_suite.py --json gpu_suite.json         # on a GPU machine
    .venv/bin/python bench/gpu_suite.py --tiny --json tiny.json        # the same code, CPU, tiny

Every line but the last is ``name: value``; the last is the SAE-step ratio
(``ratio SAE step fast/sparsify: X`` or ``ratio SAE step fast/dense matmul (...): X``).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Arch:
    """A real architecture: its family and what its configs change over the family's tiny one."""

    family: str
    text: dict[str, Any]
    vision: dict[str, Any]
    image: dict[str, Any]
    """Options of the image (and video) processor."""
    processor: dict[str, Any]
    """Options of the processor besides its parts (the tiny family's, updated)."""
    image_size: int


ARCHS = {
    "llava-1.5-7b": Arch(
        family="llava",
        text=dict(
            hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, head_dim=128, vocab_size=32064,
            max_position_embeddings=4096, rms_norm_eps=1e-5,
        ),
        vision=dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
            num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768,
        ),
        image=dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
        processor=dict(patch_size=14),
        image_size=336,
    ),
    "qwen2.5-vl-7b": Arch(
        family="qwen2_5_vl",
        text=dict(
            hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, head_dim=128, vocab_size=152064,
            max_position_embeddings=32768, rms_norm_eps=1e-6,
            layer_types=["full_attention"] * 28,
            rope_parameters={
                "rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6,
            },
        ),
        vision=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
            out_hidden_size=3584, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
        ),
        image=dict(
            patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=448 * 448,
            max_pixels=448 * 448,
        ),
        processor={},
        image_size=448,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (real on a GPU, tiny on a CPU)."""

    prompts: int = 64
    words: int = 200
    batch: int = 8
    steer_batch: int = 16
    new_tokens: int = 128
    train_batch: int = 4
    train_steps: int = 3
    reps: int = 3
    vocab: int = 8192
    sae_d_in: int = 4096
    sae_width: int = 65536
    sae_k: int = 64
    sae_batch: int = 4096
    sae_steps: int = 5


TINY = Sizes(
    prompts=8, words=20, batch=4, steer_batch=4, new_tokens=8, train_batch=2, train_steps=2,
    reps=2, vocab=600, sae_d_in=64, sae_width=512, sae_k=8, sae_batch=256, sae_steps=3,
)  # fmt: skip


# ---- models ----------------------------------------------------------------------------------
def words(rng: random.Random, n: int) -> str:
    """``n`` pseudo-words from a small syllable alphabet (the corpus and the prompts)."""
    syllables = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
    return " ".join(
        "".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(n)
    )


def train_tokenizer(adapter: Any, vocab: int, seed: int = 0) -> Any:
    """A byte-level BPE tokenizer trained here on generated text, with the family's specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokens = adapter.tiny_tokens
    specials = list(dict.fromkeys(tokens.special.split()))
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    rng = random.Random(seed)
    backend.train_from_iterator((words(rng, 50) for _ in range(2000)), trainer)
    kwargs: dict[str, Any] = dict(
        tokenizer_object=backend, eos_token=tokens.eos, pad_token=tokens.pad,
        chat_template=adapter.chat_template,
    )  # fmt: skip
    if tokens.bos is not None:
        kwargs["bos_token"] = tokens.bos
    if tokens.extra:
        kwargs["extra_special_tokens"] = tokens.extra
    return PreTrainedTokenizerFast(**kwargs)


def arch_config(name: str, tiny: bool, vocab: int) -> tuple[Any, Any, Any]:
    """``(adapter, config, processor)`` of ``name``: the family's tiny config and processor over
    a trained tokenizer, with the real sizes unless ``tiny``."""
    from interp.models.families import get_family

    arch = ARCHS[name]
    adapter = copy.copy(get_family(arch.family))
    if not tiny:
        adapter.tiny_image_options = arch.image
        adapter.tiny_processor_options = dict(adapter.tiny_processor_options) | arch.processor
    tokenizer = train_tokenizer(adapter, vocab)
    config = adapter.tiny_config(tokenizer)
    config.architectures = list(adapter.architectures)
    if not tiny:
        for key, value in arch.text.items():
            setattr(config.text_config, key, value)
        for key, value in arch.vision.items():
            setattr(config.vision_config, key, value)
    return adapter, config, adapter.tiny_processor(tokenizer)


def parameter_count(config: Any, adapter: Any) -> int:
    """Parameters of a model of ``config``, counted on the meta device (no memory)."""
    import transformers

    with torch.device("meta"):
        model = getattr(transformers, adapter.model_class)._from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_vlm(name: str, tiny: bool, vocab: int, device: torch.device, dtype: torch.dtype) -> Any:
    """A random-weight :class:`interp.models.VLM` of ``name`` on ``device`` (built in memory)."""
    import transformers

    from interp.models.vlm import VLM

    adapter, config, processor = arch_config(name, tiny, vocab)
    torch.manual_seed(0)
    with torch.device(device):
        model = getattr(transformers, adapter.model_class)._from_config(config, dtype=dtype)
    with torch.no_grad():
        adapter.tiny_randomise(model)
    model.eval()
    processor.tokenizer.padding_side = "left"
    return VLM(model=model, processor=processor, family=adapter, name_or_path=f"random:{name}")


# ---- measurements ----------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of ``fn()`` (the GPU synchronised on both sides)."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], Any]], reps: int, device: torch.device):
    """Median seconds of each run over ``reps`` interleaved rounds, after one warm-up each."""
    for run in runs.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            seconds[name].append(timed(run, device))
    return {name: statistics.median(values) for name, values in seconds.items()}


def bench_cache(vlm: Any, sizes: Sizes, work: Path) -> dict[str, float]:
    """Tokens/s: plain forward, cache at the middle layer, cache at the last layer."""
    from interp.cache import CacheConfig, CachePrompt, cache_activations_for

    rng = random.Random(1)
    prompts = [CachePrompt(id=str(i), prompt=words(rng, sizes.words)) for i in range(sizes.prompts)]
    batches = [prompts[i : i + sizes.batch] for i in range(0, len(prompts), sizes.batch)]
    inputs = [vlm.prepare([None] * len(b), [p.prompt for p in b]) for b in batches]
    n_tokens = sum(int(i["attention_mask"].sum()) for i in inputs)

    @torch.no_grad()
    def plain() -> None:
        for batch in batches:
            vlm.model(
                **vlm.prepare([None] * len(batch), [p.prompt for p in batch]), use_cache=False
            )

    def cache(layer: int) -> Callable[[], None]:
        def run() -> None:
            out = work / f"acts-{layer}"
            shutil.rmtree(out, ignore_errors=True)
            config = CacheConfig(
                model="bench", prompts="-", hooks=[vlm.hook_name(layer)], out=str(out),
                batch_size=sizes.batch, shard_rows=1 << 20, quiet=True,
            )  # fmt: skip
            cache_activations_for(vlm, prompts, config)

        return run

    middle, last = vlm.n_layers // 2, vlm.n_layers - 1
    seconds = interleaved(
        {"plain": plain, "middle": cache(middle), "last": cache(last)}, sizes.reps, vlm.device
    )
    rate = {k: n_tokens / v for k, v in seconds.items()}
    return {
        "cache_tokens": n_tokens,
        "plain_forward_tokens_per_s": rate["plain"],
        f"cache_middle_layer_{middle}_tokens_per_s": rate["middle"],
        f"cache_last_layer_{last}_tokens_per_s": rate["last"],
        "ratio_cache_middle_over_plain": rate["middle"] / rate["plain"],
        "ratio_cache_last_over_plain": rate["last"] / rate["plain"],
    }


def images(n: int, size: int) -> list[Any]:
    from PIL import Image

    return [Image.new("RGB", (size, size), (40 * i % 255, 90, 160)) for i in range(n)]


def bench_steer(vlm: Any, sizes: Sizes, image_size: int) -> dict[str, float]:
    """Generated tokens/s of plain and steered (``add`` at the middle layer) ``generate``."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from interp.steer.modes import SteerSite, steering_mode

    hook = vlm.hook_name(vlm.n_layers // 2)
    torch.manual_seed(0)
    sae_config = StandardSAEConfig(
        d_in=vlm.d_model, d_sae=8 * vlm.d_model, metadata=SAEMetadata(hook_name=hook)
    )
    sae = StandardSAE(sae_config).to(vlm.device)
    steer = steering_mode("add").hook(SteerSite(vlm, sae, hook, "all"), 0, 1.0)
    n = sizes.steer_batch
    inputs = vlm.prepare(images(n, image_size), [f"Describe picture {i}." for i in range(n)])
    pad = vlm.tokenizer.pad_token_id

    @torch.no_grad()
    def generate() -> None:
        vlm.model.generate(
            **inputs, max_new_tokens=sizes.new_tokens, min_new_tokens=sizes.new_tokens,
            do_sample=False, pad_token_id=pad,
        )  # fmt: skip

    def steered() -> None:
        with steer():
            generate()

    seconds = interleaved({"plain": generate, "steered": steered}, sizes.reps, vlm.device)
    rate = {k: n * sizes.new_tokens / v for k, v in seconds.items()}
    return {
        "generate_plain_tokens_per_s": rate["plain"],
        "generate_steered_tokens_per_s": rate["steered"],
        "ratio_steered_over_plain": rate["steered"] / rate["plain"],
    }


def bench_eval(vlm: Any, sizes: Sizes, work: Path, image_size: int) -> dict[str, float]:
    """New tokens/s of ``generate_responses`` over image prompts (greedy, batched)."""
    from interp.data.records import BenchmarkItem
    from interp.eval.generation import GenerationConfig, generate_responses

    paths = []
    for i, image in enumerate(images(sizes.steer_batch, image_size)):
        paths.append(str(work / f"image-{i}.png"))
        image.save(paths[-1])
    items = [
        BenchmarkItem(
            benchmark="gpu-suite",
            id=str(i),
            category="c",
            image_path=path,
            prompt=f"What is in picture {i}?",
            kind="benign",
        )
        for i, path in enumerate(paths)
    ]
    config = GenerationConfig(max_new_tokens=sizes.new_tokens, batch_size=sizes.steer_batch)
    out = work / "eval" / "generations.jsonl"
    warm_up = items[: max(1, sizes.steer_batch // 2)]
    generate_responses(vlm, warm_up, out, config, quiet=True, overwrite=True)
    start = time.perf_counter()
    records = generate_responses(vlm, items, out, config, quiet=True, overwrite=True)
    _sync(vlm.device)
    seconds = time.perf_counter() - start
    new = sum(int(r["new_tokens"]) for r in records)
    return {"eval_new_tokens": new, "eval_tokens_per_s": new / seconds}


def bench_lora(vlm: Any, sizes: Sizes, work: Path, image_size: int) -> dict[str, float]:
    """Tokens/s and peak memory of LoRA steps (r 16, the family's default targets, AdamW)."""
    from interp.train import TrainConfig
    from interp.train.data import Example, answer_tokens, tokenize_examples
    from interp.train.model import prepare_model
    from interp.train.trainer import _backward

    rng = random.Random(2)
    examples = []
    for i, image in enumerate(images(sizes.train_batch, image_size)):
        path = work / f"train-{i}.png"
        image.save(path)
        examples.append(
            Example(id=str(i), image=str(path), prompt=words(rng, 12), response=words(rng, 40))
        )
    encoded, _ = tokenize_examples(vlm, examples, quiet=True)
    config = TrainConfig(
        model=vlm.name_or_path, out=str(work / "run"), data="-", method="lora", lora_dropout=0.0
    )
    model = prepare_model(vlm, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    n_answer = answer_tokens(encoded)
    n_tokens = sum(int(e["input_ids"].numel()) for e in encoded)

    def step() -> None:
        _backward(model, vlm, [encoded], n_answer, None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (optimizer state, kernels)
    if vlm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(timed(step, vlm.device) for _ in range(sizes.train_steps))
    out = {
        "lora_batch": len(encoded),
        "lora_step_tokens": n_tokens,
        "lora_trainable_parameters": sum(p.numel() for p in params),
        "lora_step_s": seconds,
        "lora_tokens_per_s": n_tokens / seconds,
    }
    if vlm.device.type == "cuda":
        out["lora_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def bench_sae(sizes: Sizes, device: torch.device, sparsify_site: str | None) -> dict[str, Any]:
    """Tokens/s of the fast TopK step, sparsify's step (if importable), the dense matmul."""
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    from interp.sae.fast import fast_training_step

    d_in, width, k, n = sizes.sae_d_in, sizes.sae_width, sizes.sae_k, sizes.sae_batch
    torch.manual_seed(0)
    x = torch.randn(n, d_in, device=device)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=width, k=k)).to(device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=2e-4)
    fired = torch.zeros(width, device=device)

    def update(module: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    def fast() -> None:  # what interp.sae.fit runs per batch
        out = fast_training_step(sae, x, None)
        fired.add_(torch.bincount(out.cols, minlength=width))
        update(sae, optimizer, out.loss)

    w = torch.randn(d_in, width, device=device)
    runs: dict[str, Callable[[], Any]] = {"fast": fast, "dense matmul": lambda: x @ w}
    note = ""
    try:
        if importlib.util.find_spec("sparsify") is None and sparsify_site:
            sys.path.append(sparsify_site)
        from sparsify import SparseCoder, SparseCoderConfig

        coder = SparseCoder(d_in, SparseCoderConfig(num_latents=width, k=k), device=device)
        coder_opt = torch.optim.Adam(coder.parameters(), lr=2e-4)

        def sparsify_step() -> None:  # what sparsify's Trainer does per batch
            out = coder(x, dead_mask=None)
            (out.fvu + out.auxk_loss).backward()
            coder.remove_gradient_parallel_to_decoder_directions()
            coder_opt.step()
            coder_opt.zero_grad()
            coder.set_decoder_norm_to_unit_norm()

        runs["sparsify"] = sparsify_step
    except ImportError as error:
        note = f"sparsify not importable ({error})"

    def repeated(run: Callable[[], Any]) -> Callable[[], None]:
        return lambda: [run() for _ in range(sizes.sae_steps)]  # type: ignore[func-returns-value]

    seconds = interleaved({k: repeated(v) for k, v in runs.items()}, sizes.reps, device)
    rate = {k: n * sizes.sae_steps / v for k, v in seconds.items()}
    out: dict[str, Any] = {
        "sae_shape": f"d_in {d_in}, width {width}, k {k}, batch {n}",
        "sae_fast_tokens_per_s": rate["fast"],
        "sae_dense_matmul_tokens_per_s": rate["dense matmul"],
    }
    if "sparsify" in rate:
        out["sae_sparsify_tokens_per_s"] = rate["sparsify"]
        out["ratio_sae_step"] = ("fast/sparsify", rate["fast"] / rate["sparsify"])
    else:
        out["sparsify"] = note
        label = "fast/dense matmul (sparsify not importable)"
        out["ratio_sae_step"] = (label, rate["fast"] / rate["dense matmul"])
    return out


# ---- the run ---------------------------------------------------------------------------------
def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the suite; the result the JSON holds."""
    from interp.models import resolve_device

    tiny = args.tiny
    device = resolve_device("cpu" if tiny else args.device)
    dtype = getattr(torch, args.dtype or ("float32" if tiny else "bfloat16"))
    sizes = TINY if tiny else Sizes()
    result: dict[str, Any] = {
        "tiny": tiny, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__, "architectures": {},
    }  # fmt: skip
    for name in args.archs:
        if name not in ARCHS:
            raise SystemExit(f"--archs: unknown architecture {name!r}; known: {', '.join(ARCHS)}")
        started = time.perf_counter()
        adapter, config, _ = arch_config(name, False, sizes.vocab)
        numbers: dict[str, Any] = {"real_size_parameters": parameter_count(config, adapter)}
        vlm = build_vlm(name, tiny, sizes.vocab, device, dtype)
        image_size = 32 if tiny else ARCHS[name].image_size
        numbers.update(d_model=vlm.d_model, layers=vlm.n_layers)
        with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
            work = Path(tmp)
            numbers.update(bench_cache(vlm, sizes, work))
            numbers.update(bench_steer(vlm, sizes, image_size))
            numbers.update(bench_eval(vlm, sizes, work, image_size))
            numbers.update(bench_lora(vlm, sizes, work, image_size))
        numbers["seconds"] = time.perf_counter() - started
        result["architectures"][name] = numbers
        del vlm
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result["sae"] = bench_sae(sizes, device, args.sparsify_site)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configs on CPU (< 2 minutes)")
    parser.add_argument("--device", default="cuda", help="the GPU (real sizes)")
    parser.add_argument(
        "--dtype", choices=["bfloat16", "float32"], help="default: bfloat16, float32 with --tiny"
    )
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), help="architectures to run")
    parser.add_argument("--json", help="write every number to this JSON file")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (--tiny)")
    default_site = "/tmp/benchvenv/lib/python3.11/site-packages"
    parser.add_argument(
        "--sparsify-site", default=default_site if os.path.isdir(default_site) else None,
        help="site-packages of a venv with eai-sparsify (same torch), when not importable here",
    )  # fmt: skip
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("gpu_suite: no GPU here (torch.cuda.is_available() is False); use --tiny")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = run_suite(args)
    result["wall_s"] = time.perf_counter() - started
    for name, numbers in result["architectures"].items():
        for key, value in numbers.items():
            print(
                f"{name} {key}: {value:.4g}"
                if isinstance(value, float)
                else f"{name} {key}: {value}"
            )
    sae = result["sae"]
    for key, value in sae.items():
        if key != "ratio_sae_step":
            print(f"sae {key}: {value:.4g}" if isinstance(value, float) else f"sae {key}: {value}")
    label, ratio = sae["ratio_sae_step"]
    result["sae"]["ratio_sae_step"] = {"against": label, "ratio": ratio}
    if args.json:
        from interp.artifacts import write_json_atomic

        write_json_atomic(Path(args.json), result)
    print(f"device: {result['device']} ({result['device_name']}), {result['dtype']}, "
          f"{result['wall_s']:.1f} s")  # fmt: skip
    print(f"ratio SAE step {label}: {ratio:.3f}")


if __name__ == "__main__":
    main()
