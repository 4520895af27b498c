"""CLI: ``vsfa eval``, ``vsfa compare``, ``vsfa benchmarks {list,check,fixtures}`` and
``vsfa judge {check,agree}``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from interp.eval.config import EvalConfig
from interp.eval.judge_commands import judge_app, print_agreement
from interp.options import config_command

benchmarks_app = typer.Typer(
    help="Benchmark folders: list the loaders, check a download, write fixture folders.",
    no_args_is_help=True,
)


@config_command(EvalConfig, short={"model": "-m", "out": "-o", "quiet": "-q"})
def eval_command(
    config: EvalConfig,
    bench: list[str] = typer.Option(
        ...,
        "--bench",
        "-b",
        help="NAME=PATH of a local benchmark copy, or NAME (repeatable); "
        "see `vsfa benchmarks list`",
    ),
) -> None:
    """Generate, judge and score a model on local benchmark copies (resumes after a crash)."""
    from interp.data.benchmarks import load_benchmarks
    from interp.eval.run import resolve_defense
    from interp.eval.shards import on_main
    from interp.eval.table import format_metric
    from interp.models.loading import resolve_device
    from interp.parallel import check_launch, process_group

    check_launch(command="eval")  # a launch that would run one process fails before any work
    items = load_benchmarks(bench, config.per_category, config.subsample_seed)
    defense_name, _ = resolve_defense(config.defense)
    # under torchrun: join the group (each rank on its own GPU) before the models load; only
    # rank 0 judges, so only it loads the judge
    with process_group(str(resolve_device(config.device)), command="eval") as ranks:
        judge = on_main(ranks, config.make_judge, share=False)
        metrics = _load_and_evaluate(config, items, judge, defense_name)
    if not ranks.is_main:
        return
    summary = metrics["summary"]
    typer.echo(
        f"wrote {config.out}/metrics.json ({len(items)} items, judge {metrics['judge']['name']})"
    )
    for name, percent in (("asr", True), ("cs", False), ("over_refusal", True),
                          ("capability", True)):  # fmt: skip
        typer.echo(f"{name:13s} {format_metric(summary.get(name), percent)}")
    if summary.get("skipped"):
        typer.echo(f"skipped       {summary['skipped']} item(s) (see judged.jsonl 'reason')")


def _load_and_evaluate(
    config: EvalConfig, items: list, judge: object | None, defense_name: str | None
) -> dict:
    """Load the model and evaluate it (inside the launch's process group)."""
    from interp.eval.run import evaluate
    from interp.models import load_vlm

    vlm = load_vlm(
        config.model, device=config.device, dtype=config.dtype, adapter=config.adapter,
        device_map=config.device_map, max_memory=config.max_memory,
    )  # fmt: skip
    metrics = evaluate(
        vlm, items, config.out, judge=judge, generation=config.generation(),
        defense=config.defense, label=config.label(defense_name), system=config.system,
        n_boot=config.n_boot, force=config.force, overwrite=config.overwrite, quiet=config.quiet,
    )  # fmt: skip
    return metrics


def compare_command(
    results: list[Path] = typer.Argument(..., help="result folders of `vsfa eval`"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for table.md and table.json"),
    judges: str | None = typer.Option(
        None,
        "--judges",
        help="A,B: re-judge every folder's stored replies with two judges and report Cohen's "
        "kappa between them (written to agreement.json)",
    ),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for the kappa interval"),
) -> None:
    """Render the paper-style table (rows model x method) as markdown and JSON."""
    from interp.eval.table import write_table

    folder = write_table(results, out)
    typer.echo((folder / "table.md").read_text(encoding="utf-8"), nl=False)
    if judges is not None:
        from interp.artifacts import write_json_atomic
        from interp.eval.judge_config import JudgeAgreeConfig
        from interp.eval.judges.agreement import judge_agreement

        config = JudgeAgreeConfig(judges=[j.strip() for j in judges.split(",") if j.strip()],
                                  n_boot=n_boot, quiet=True)  # fmt: skip
        report = judge_agreement(
            results, [config.make(spec) for spec in config.judges or ()], n_boot=n_boot
        )
        typer.echo("")
        print_agreement(report)
        write_json_atomic(folder / "agreement.json", report)


@benchmarks_app.command("list")
def list_command() -> None:
    """The benchmark names ``--bench NAME=PATH`` accepts."""
    from interp.data.benchmarks import BENCHMARKS

    for name, loader in BENCHMARKS.items():
        doc = (loader.__doc__ or "").strip().splitlines()
        typer.echo(f"{name:18s} {doc[0] if doc else ''}")


@benchmarks_app.command("check")
def check_command(
    bench: list[str] = typer.Argument(..., help="NAME=PATH of a local benchmark copy"),
) -> None:
    """Load benchmark folders and count their items per kind and category."""
    from interp.data.benchmarks import load_benchmark, parse_bench_spec

    for spec in bench:
        name, path = parse_bench_spec(spec)
        items = load_benchmark(name, path)
        kinds = Counter(item.kind for item in items)
        with_image = sum(item.image_path is not None for item in items)
        typer.echo(
            f"{name}: {len(items)} items ({', '.join(f'{k} {v}' for k, v in kinds.items())}; "
            f"{with_image} with images)"
        )
        for category, count in Counter(item.category for item in items).items():
            typer.echo(f"  {category}: {count}")


@benchmarks_app.command("fixtures")
def fixtures_command(
    out: Path = typer.Option(..., "--out", "-o", help="folder to write the fixtures into"),
) -> None:
    """Write tiny placeholder folders in every benchmark's real layout (for trying things)."""
    from interp.data.benchmarks.fixtures import write_fixture_benchmarks

    for name, path in write_fixture_benchmarks(out).items():
        typer.echo(f"--bench {name}={path}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.add_typer(benchmarks_app, name="benchmarks")
    app.add_typer(judge_app, name="judge")
