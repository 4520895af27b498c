"""CLI: ``vsfa data build`` and ``vsfa data audit``."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.data.vqa import BuildConfig
from interp.options import config_command

data_app = typer.Typer(
    help="VSFA's neutral VQA set: build it from an image folder, audit it.",
    no_args_is_help=True,
)


@data_app.command("build")
@config_command(BuildConfig, short={"images": "-i", "out": "-o", "quiet": "-q"})
def data_build_command(config: BuildConfig) -> None:
    """Build the neutral VQA set (and audit it; the report is saved beside --out)."""
    from interp.data.vqa import build_vqa

    report = build_vqa(config)
    typer.echo(f"wrote {report['records']} records from {report['images']} images to {config.out}")
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
