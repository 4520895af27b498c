"""CLI: ``vsfa data build`` and ``vsfa data audit``."""

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


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
