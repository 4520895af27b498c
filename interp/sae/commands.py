"""CLI: ``vsfa cache`` and ``vsfa sae train``."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.errors import VSFAError

sae_app = typer.Typer(help="Sparse autoencoders on cached activations.", no_args_is_help=True)


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def cache_command(
    model: str = typer.Option(..., help="hub id or local model folder"),
    prompts: str = typer.Option(
        ..., help="benchmark spec NAME=PATH (or NAME), a VQA .jsonl, or a .txt (one per line)"
    ),
    hooks: list[str] = typer.Option(
        ..., "--hooks", "--hook", help="hook names, comma separated or repeated"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="activation folder to write"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    positions: str = typer.Option("all", help="all, last, response, image or text"),
    shard_rows: int = typer.Option(16384, min=1, help="rows per shard file"),
    dtype: str = typer.Option("float32", help="storage dtype: float32 or bfloat16"),
    batch_size: int = typer.Option(8, min=1, help="prompts per forward"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    model_dtype: str = typer.Option("auto", help="dtype the model runs in"),
    limit: int | None = typer.Option(None, min=1, help="only the first N prompts"),
    system: str | None = typer.Option(None, help="system prompt"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run prompts through a model and write residual activations (sharded safetensors)."""
    from interp.hooks.cache import CacheConfig, cache_activations

    config = CacheConfig(
        model=model,
        adapter=None if adapter is None else str(adapter),
        prompts=prompts,
        hooks=_split(hooks),
        out=str(out),
        positions=positions,
        shard_rows=shard_rows,
        dtype=dtype,
        batch_size=batch_size,
        device=device,
        model_dtype=model_dtype,
        limit=limit,
        system=system,
        quiet=quiet,
    )
    path = cache_activations(config)
    from interp.hooks.cache import ActivationStore

    store = ActivationStore(path)
    typer.echo(f"{path}: {len(store)} rows x {store.d_model} for {', '.join(store.hook_names)}")


@sae_app.command("train")
def train_command(
    acts: list[Path] = typer.Option(..., "--acts", help="activation folder(s); repeat for several"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder, e.g. sae_checkpoints/NAME"),
    hook: str | None = typer.Option(None, help="cached hook (default: the folders' only hook)"),
    arch: str = typer.Option("topk", help="topk, batchtopk, jumprelu or standard"),
    width: int = typer.Option(4096, min=1, help="number of latents"),
    k: int = typer.Option(32, min=1, help="active latents per token (topk/batchtopk)"),
    lr: float = typer.Option(2e-4, help="Adam learning rate"),
    steps: int | None = typer.Option(None, min=1, help="training steps (default: one epoch)"),
    tokens: int | None = typer.Option(None, min=1, help="training rows instead of --steps"),
    batch_size: int = typer.Option(4096, min=1),
    buffer_rows: int = typer.Option(262144, min=1, help="shuffle buffer (bounds memory)"),
    normalize: str = typer.Option("none", help="none or expected_average_only_in"),
    l1_coefficient: float = typer.Option(1.0, help="standard: L1 penalty"),
    l0_coefficient: float = typer.Option(1.0, help="jumprelu: L0 penalty"),
    checkpoint_every: int = typer.Option(0, min=0, help="resumable checkpoint every N steps"),
    eval_prompts: int = typer.Option(16, min=0, help="prompts for the spliced CE/KL (0: skip)"),
    slow_step: bool = typer.Option(False, help="use sae_lens's own step also for topk"),
    log: str = typer.Option("none", help="none, tensorboard or wandb"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train an SAE (sae_lens format) on cached activations and write metrics.json."""
    from interp.artifacts import read_json
    from interp.sae.train import SAETrainConfig, train_sae

    if steps is not None and tokens is not None:
        raise VSFAError("give --steps or --tokens, not both")
    config = SAETrainConfig(
        acts=[str(a) for a in acts],
        out=str(out),
        hook_name=hook,
        arch=arch,
        width=width,
        k=k,
        lr=lr,
        steps=steps,
        tokens=tokens,
        batch_size=batch_size,
        buffer_rows=buffer_rows,
        device=device,
        seed=seed,
        normalize=normalize,
        l1_coefficient=l1_coefficient,
        l0_coefficient=l0_coefficient,
        checkpoint_every=checkpoint_every,
        fast_step=not slow_step,
        eval_prompts=eval_prompts,
        log=log,
        quiet=quiet,
    )
    path = train_sae(config)
    metrics = read_json(path / "metrics.json")
    shown = ("fvu", "explained_variance", "l0", "dead_fraction", "ce_loss_increase", "kl")
    summary = ", ".join(
        f"{key} {metrics[key]:.4g}" for key in shown if isinstance(metrics.get(key), (int, float))
    )
    typer.echo(f"{path}: {summary}")


def register(app: typer.Typer) -> None:
    app.command("cache")(cache_command)
    app.add_typer(sae_app, name="sae")
