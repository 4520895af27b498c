"""CLI: ``vsfa train``."""

from __future__ import annotations

from pathlib import Path

import typer


def train_command(
    model: str = typer.Option(..., "--model", "-m", help="base model: hub id or local folder"),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="VQA JSONL (lora, full) or VLGuard train.json (vlguard)"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="run folder"),
    method: str = typer.Option("lora", help="lora, full, vlguard or none"),
    lora_r: int = typer.Option(16, min=1),
    lora_alpha: int = typer.Option(32, min=1),
    lora_dropout: float = typer.Option(0.05, min=0.0),
    lora_targets: str | None = typer.Option(
        None, help="comma-separated module names in the language model (default: family's)"
    ),
    lr: float | None = typer.Option(
        None, help="peak learning rate (default: 2e-4 LoRA, 2e-5 full)"
    ),
    epochs: int = typer.Option(1, min=1),
    max_steps: int | None = typer.Option(None, min=1, help="optimizer steps (wins over epochs)"),
    batch_size: int = typer.Option(4, min=1),
    grad_accum: int = typer.Option(1, min=1, help="micro-batches per optimizer step"),
    warmup_ratio: float = typer.Option(0.03, min=0.0),
    weight_decay: float = typer.Option(0.0, min=0.0),
    seed: int = typer.Option(0),
    limit: int | None = typer.Option(None, min=1, help="seeded random subset of N records"),
    image_root: Path | None = typer.Option(None, help="VLGuard image folder"),
    system: str | None = typer.Option(None, help="system prompt of every training conversation"),
    max_length: int | None = typer.Option(None, min=1, help="drop longer examples (tokens)"),
    gradient_checkpointing: bool = typer.Option(False, help="less memory, more compute"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto (bf16 on GPU)"),
    save_every: int = typer.Option(50, min=0, help="checkpoint every N steps (0: never)"),
    overwrite: bool = typer.Option(False, help="replace a run folder made with other arguments"),
    threads: int | None = typer.Option(None, min=1, help="CPU threads (1 is best on busy CPUs)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Fine-tune (VSFA with LoRA or full weights, or the VLGuard baseline); resumable."""
    from interp.train import TrainConfig, train

    config = TrainConfig(
        model=model, data=None if data is None else str(data), out=str(out), method=method,
        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        lora_targets=[t.strip() for t in lora_targets.split(",") if t.strip()]
        if lora_targets else None,
        lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        warmup_ratio=warmup_ratio, weight_decay=weight_decay, seed=seed, limit=limit,
        image_root=None if image_root is None else str(image_root), system=system,
        max_length=max_length, gradient_checkpointing=gradient_checkpointing, device=device,
        dtype=dtype, save_every=save_every, overwrite=overwrite, threads=threads, quiet=quiet,
    )  # fmt: skip
    run = train(config)
    from interp.artifacts import read_json

    manifest = read_json(run / "manifest.json")
    loss = manifest.get("final_loss")
    done = f"final loss {loss:.4f}, " if loss is not None else ""
    typer.echo(f"wrote {run} ({done}{manifest.get('wall_time_s', 0):.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
