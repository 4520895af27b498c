"""CLI: ``vsfa judge check`` (a judge against labelled replies) and ``vsfa judge agree`` (two
judges on the stored replies of result folders)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.eval.judge_config import JudgeAgreeConfig, JudgeCheckConfig
from interp.options import config_command

judge_app = typer.Typer(
    help="Judges: calibrate one against labelled replies, compare two on stored replies.",
    no_args_is_help=True,
)


@judge_app.command("check")
@config_command(JudgeCheckConfig, short={"out": "-o", "quiet": "-q"})
def check_command(config: JudgeCheckConfig) -> None:
    """Precision, recall and F1 per label and kind (bootstrap intervals), the confusion matrix
    and the disagreements of a judge on labelled replies (default: the shipped set)."""
    from interp.artifacts import write_json_atomic
    from interp.eval.judges.calibration import (
        DEFAULT_LABELS,
        check_judge,
        load_labels,
        render_check,
    )

    replies = load_labels(config.labels)
    judge = config.make(config.judge)
    source = str(config.labels or DEFAULT_LABELS)
    report = check_judge(judge, replies, n_boot=config.n_boot, seed=config.seed, source=source)
    typer.echo(render_check(report, config.show), nl=False)
    if config.out:
        write_json_atomic(Path(config.out), report)
        typer.echo(f"wrote {config.out}")


def print_agreement(report: dict) -> None:
    """The kappa lines of a :func:`~interp.eval.judges.agreement.judge_agreement` report."""
    from interp.eval.judges.agreement import format_kappa

    a, b = (j["name"] for j in report["judges"])
    typer.echo(f"judge agreement {a} vs {b} (Cohen's kappa, {report['intervals']}):")
    for folder, result in report["results"].items():
        typer.echo(f"  {folder}: outcome {format_kappa(result['outcome'])}; "
                   f"attack success {format_kappa(result['attack_success'])}")  # fmt: skip
    pooled = report["pooled"]
    typer.echo(f"  all: outcome {format_kappa(pooled['outcome'])}; "
               f"attack success {format_kappa(pooled['attack_success'])}")  # fmt: skip


@judge_app.command("agree")
@config_command(JudgeAgreeConfig, short={"out": "-o", "quiet": "-q"})
def agree_command(
    config: JudgeAgreeConfig,
    results: list[Path] = typer.Argument(..., help="result folders of `vsfa eval`"),
) -> None:
    """Re-judge the stored replies of result folders with two judges and report Cohen's kappa
    (three-way outcome, and attack success on harmful items) with bootstrap intervals."""
    from interp.artifacts import write_json_atomic
    from interp.eval.judges.agreement import judge_agreement

    judges = [config.make(spec) for spec in config.judges or ()]
    report = judge_agreement(results, judges, n_boot=config.n_boot, seed=config.seed)
    print_agreement(report)
    if config.out:
        write_json_atomic(Path(config.out), report)
        typer.echo(f"wrote {config.out}")
