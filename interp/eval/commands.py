"""CLI: ``vsfa eval``, ``vsfa compare`` and ``vsfa benchmarks {list,check,fixtures}``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from interp.errors import VSFAError

benchmarks_app = typer.Typer(
    help="Benchmark folders: list the loaders, check a download, write fixture folders.",
    no_args_is_help=True,
)


def load_items(benches: list[str], per_category: int | None, seed: int) -> list:
    """Items of several ``--bench NAME[=PATH]`` specs, refusing overlapping benchmarks."""
    from interp.data.benchmarks import load_benchmark, parse_bench_spec

    items = []
    seen: set[str] = set()
    for spec in benches:
        name, path = parse_bench_spec(spec)
        loaded = load_benchmark(name, path, per_category=per_category, seed=seed)
        duplicates = seen & {item.key for item in loaded}
        if duplicates:
            raise VSFAError(
                f"--bench {spec} repeats items of another --bench (e.g. {min(duplicates)})"
            )
        seen.update(item.key for item in loaded)
        items.extend(loaded)
    return items


_load_items = load_items  # the name other stages' commands imported first


def eval_command(
    model: str = typer.Option(..., "--model", "-m", help="hub id or local model folder"),
    bench: list[str] = typer.Option(
        ...,
        "--bench",
        "-b",
        help="NAME=PATH of a local benchmark copy (repeatable); see `vsfa benchmarks list`",
    ),  # fmt: skip
    out: Path = typer.Option(..., "--out", "-o", help="result folder"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    judge: str = typer.Option("keyword", help="keyword, keyword:FILE, llm:PATH or organism"),
    judge_template: Path | None = typer.Option(None, help="prompt template file for llm judge"),
    defense: str | None = typer.Option(None, help="adashield, or a defense prompt .txt file"),
    method: str | None = typer.Option(
        None, help="method label for the table (default: the defense name, else 'none')"
    ),  # fmt: skip
    model_label: str | None = typer.Option(None, help="model name for the table"),
    seed: int | None = typer.Option(None, help="run seed (table label and sampling seed)"),
    per_category: int | None = typer.Option(None, min=1, help="at most N items per category"),
    subsample_seed: int = typer.Option(0, help="seed of the per-category subsample"),
    sample: bool = typer.Option(False, "--sample", help="sample instead of greedy decoding"),
    samples_per_item: int = typer.Option(1, min=1, help="samples per item (with --sample)"),
    temperature: float = typer.Option(1.0, help="sampling temperature"),
    top_p: float = typer.Option(1.0, help="nucleus sampling threshold"),
    max_new_tokens: int = typer.Option(64, min=1),
    batch_size: int = typer.Option(8, min=1),
    system: str | None = typer.Option(None, help="system text for every prompt"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto"),
    n_boot: int = typer.Option(1000, min=0, help="bootstrap resamples for the intervals"),
    force: bool = typer.Option(False, help="recompute even if --out holds current results"),
    overwrite: bool = typer.Option(False, help="discard existing generations (no resume)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Generate, judge and score a model on local benchmark copies (resumes after a crash)."""
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge
    from interp.eval.run import evaluate, resolve_defense
    from interp.models import load_vlm

    items = load_items(bench, per_category, subsample_seed)
    defense_name, _ = resolve_defense(defense)
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=sample,
        temperature=temperature, top_p=top_p, seed=seed or 0, samples_per_item=samples_per_item,
    )  # fmt: skip
    generation.validate()
    judge_impl = make_judge(
        judge, template=judge_template, device=device, dtype=dtype, batch_size=batch_size,
        quiet=quiet,
    )  # fmt: skip
    vlm = load_vlm(model, device=device, dtype=dtype, adapter=adapter)
    label = {
        "model": model_label or Path(model.rstrip("/")).name or model,
        "adapter": str(adapter) if adapter else None,
        "method": method or defense_name or "none",
        "seed": seed,
    }
    metrics = evaluate(
        vlm, items, out, judge=judge_impl, generation=generation, defense=defense, label=label,
        system=system, n_boot=n_boot, force=force, overwrite=overwrite, quiet=quiet,
    )  # fmt: skip
    from interp.eval.table import format_metric

    summary = metrics["summary"]
    typer.echo(f"wrote {out}/metrics.json ({len(items)} items, judge {metrics['judge']['name']})")
    for name, percent in (("asr", True), ("cs", False), ("over_refusal", True),
                          ("capability", True)):  # fmt: skip
        typer.echo(f"{name:13s} {format_metric(summary.get(name), percent)}")
    if summary.get("skipped"):
        typer.echo(f"skipped       {summary['skipped']} item(s) (see judged.jsonl 'reason')")


def compare_command(
    results: list[Path] = typer.Argument(..., help="result folders of `vsfa eval`"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for table.md and table.json"),
) -> None:
    """Render the paper-style table (rows model x method) as markdown and JSON."""
    from interp.eval.table import write_table

    folder = write_table(results, out)
    typer.echo((folder / "table.md").read_text(encoding="utf-8"), nl=False)


@benchmarks_app.command("list")
def list_command() -> None:
    """The benchmark names ``--bench NAME=PATH`` accepts."""
    from interp.data.benchmarks import BENCHMARKS, ensure_plugins

    ensure_plugins()
    for name in sorted(BENCHMARKS):
        doc = (BENCHMARKS[name].__doc__ or "").strip().splitlines()
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
