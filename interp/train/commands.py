"""CLI: ``vsfa data build``, ``vsfa data audit``, ``vsfa train`` and ``vsfa run``."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(
    help="VSFA's neutral VQA set: build it from an image folder, audit it.",
    no_args_is_help=True,
)


@data_app.command("build")
def data_build_command(
    images: Path = typer.Option(
        ..., "--images", "-i", help="image folder (+ <stem>.json sidecars)"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="the VQA JSONL to write"),
    source: str = typer.Option(
        "metadata", help="answer source: metadata, model:PATH (a local VLM) or jsonl:PATH"
    ),
    questions_per_image: int = typer.Option(4, min=1, help="neutral questions per image"),
    limit: int | None = typer.Option(None, min=1, help="seeded random subset of N images"),
    seed: int = typer.Option(0, help="seed of the question draws and --limit subset"),
    strict: bool = typer.Option(
        False, help="fail on corrupt images, missing answers and audit flags instead of skipping"
    ),
    lexicon: Path | None = typer.Option(None, help="audit lexicon (.json categories or .txt)"),
    max_new_tokens: int = typer.Option(48, min=1, help="answer length for a model: source"),
    batch_size: int = typer.Option(8, min=1, help="generation batch for a model: source"),
    device: str = typer.Option("auto", help="cpu, cuda or auto (model: source)"),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto (model: source)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Build the neutral VQA set (and audit it; the report is saved beside --out)."""
    from interp.data.audit import load_lexicon
    from interp.data.vqa import BuildConfig, build_vqa

    report = build_vqa(
        BuildConfig(
            images=str(images), out=str(out), source=source,
            questions_per_image=questions_per_image, seed=seed, limit=limit, strict=strict,
            lexicon=load_lexicon(lexicon), max_new_tokens=max_new_tokens,
            batch_size=batch_size, device=device, dtype=dtype, quiet=quiet,
        )
    )  # fmt: skip
    typer.echo(f"wrote {report['records']} records from {report['images']} images to {out}")
    for reason, count in report["skipped"].items():
        typer.echo(f"skipped {count} ({reason.replace('_', ' ')})")
    audit = report["audit"]
    typer.echo(
        f"audit: {audit['flagged']} of {audit['total']} records dropped; report {audit['report']}"
    )


@data_app.command("audit")
def data_audit_command(
    data: Path = typer.Argument(..., help="VQA JSONL"),
    strict: bool = typer.Option(False, help="fail (exit 2) if any record is flagged"),
    lexicon: Path | None = typer.Option(None, help="audit lexicon (.json categories or .txt)"),
    keep: bool = typer.Option(False, help="only report; do not drop flagged records"),
) -> None:
    """Check a VQA set is label-free: drop (default) or fail on refusals and safety words."""
    from interp.data.audit import audit_file, audit_report_path, load_lexicon

    report = audit_file(data, lexicon=load_lexicon(lexicon), strict=strict, drop=not keep)
    typer.echo(report.summary())
    for example in report.examples[:5]:
        typer.echo(f"  {example['id']}: {', '.join(example['terms'])}")
    typer.echo(f"report: {audit_report_path(data)}")


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


def run_command(
    experiment: Path = typer.Argument(..., help="experiment YAML"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Run an experiment: data -> train -> eval for methods x seeds, then the table."""
    from interp.config import load_experiment
    from interp.train.experiment import run_experiment

    out = run_experiment(load_experiment(experiment), quiet=quiet)
    typer.echo((out / "table.md").read_text(encoding="utf-8"), nl=False)
    typer.echo(f"wrote {out}/table.md and table.json")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.command("train")(train_command)
    app.command("run")(run_command)
