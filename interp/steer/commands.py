"""CLI: ``vsfa steer``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from interp.errors import VSFAError


def open_sae(path: str | Path, device: str = "cpu") -> Any:
    """An SAE folder (sae_lens format) -> SAE; the SAE stage's ``load_sae`` when it exists."""
    path = Path(path)
    if not path.exists():
        raise VSFAError(f"--sae {path} does not exist")
    try:
        from interp.sae import load_sae
    except ImportError:
        load_sae = None
    if load_sae is not None:
        return load_sae(path, device=device)
    from sae_lens import SAE

    if not (path / "cfg.json").exists():
        raise VSFAError(f"--sae {path} is not an SAE folder (no cfg.json)")
    try:
        return SAE.load_from_disk(str(path), device=device)
    except Exception as error:  # sae_lens raises assorted errors for malformed folders
        raise VSFAError(f"--sae {path} cannot be loaded: {error}") from None


def _latent_from_file(latents_file: Path) -> int | list[int]:
    """The diff's selected latent (or set, when it selected several)."""
    from interp.artifacts import read_json
    from interp.steer.interventions import as_latents

    data = read_json(latents_file)
    chosen = (data.get("selected") or {}).get("latents") or []
    if not chosen:
        raise VSFAError(
            f"{latents_file}: the diff selected no latent (nothing significant); pass --latent"
        )
    return as_latents(chosen)


def parse_latents(text: str) -> int | list[int]:
    """``"7"`` -> 7; ``"7,12,40"`` -> a set steered together; a clear error otherwise."""
    from interp.steer.interventions import as_latents

    try:
        return as_latents([int(part.strip()) for part in text.split(",")])
    except ValueError:
        raise VSFAError(f"--latent {text!r}: expected an index or indices like 7,12,40") from None


def steer_command(
    model: str = typer.Option(..., "--model", "-m", help="hub id or local model folder"),
    sae: Path = typer.Option(..., help="SAE folder (sae_lens format)"),
    bench: list[str] = typer.Option(..., "--bench", help="NAME or NAME=PATH (repeatable)"),
    out: Path = typer.Option(..., "--out", "-o", help="sweep folder"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    latent: str | None = typer.Option(
        None, help="latent index to steer, or several (7,12,40) steered together"
    ),
    latents: Path | None = typer.Option(
        None, help="latents.json: steer its selected latent(s); its diff of means is the baseline"
    ),
    mode: str = typer.Option("add", help="add, ablate or clamp"),
    alphas: str = typer.Option(
        "0,2,4,8",
        help="strengths: add = multiples of W_dec[i]; ablate = fraction removed; clamp = value",
    ),
    positions: str = typer.Option("all", help="all, prompt or generated"),
    hook: str | None = typer.Option(None, help="hook to steer at (default: the SAE's hook)"),
    n_random: int = typer.Option(3, min=0, help="random-latent controls"),
    diff_of_means: Path | None = typer.Option(
        None, help="latents.json or .safetensors with the diff-of-means direction"
    ),
    dom_alphas: str | None = typer.Option(None, help="alphas for the diff of means"),
    judge: str = typer.Option("keyword", help="keyword, llm:PATH or organism"),
    per_category: int | None = typer.Option(None, min=1, help="at most N items per category"),
    max_new_tokens: int = typer.Option(64, min=1),
    batch_size: int = typer.Option(8, min=1),
    n_boot: int = typer.Option(1000, min=0),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto"),
    seed: int = typer.Option(0, help="seed of the random latents and of sampling"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Dose-response sweep of one latent (or a set) through the eval harness, with controls."""
    from interp.eval.commands import load_items
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge
    from interp.models import load_vlm
    from interp.steer.sweep import check_mode, parse_alphas, render_markdown, steer_sweep

    check_mode(mode)
    alpha_values = parse_alphas(alphas)
    dom_values = parse_alphas(dom_alphas) if dom_alphas else None
    if latent is None:
        if latents is None:
            raise VSFAError("give --latent I or --latents latents.json (its selected latent)")
        chosen = _latent_from_file(latents)
    else:
        chosen = parse_latents(latent)
    dom_source = diff_of_means or latents
    items = load_items(bench, per_category, seed)
    generation = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)
    generation.validate()
    judge_impl = make_judge(judge, device=device, dtype=dtype, batch_size=batch_size, quiet=quiet)
    vlm = load_vlm(model, device=device, dtype=dtype, adapter=adapter)
    sae_model = open_sae(sae, device=str(vlm.device))
    result = steer_sweep(
        vlm, items, sae_model, chosen, mode, alpha_values, judge_impl, out, n_random,
        hook_name=hook, positions=positions, generation=generation, diff_of_means=dom_source,
        dom_alphas=dom_values, seed=seed, n_boot=n_boot, quiet=quiet,
        label={"model": Path(model.rstrip("/")).name or model,
               "adapter": str(adapter) if adapter else None},
    )  # fmt: skip
    typer.echo(render_markdown(result))
    typer.echo(f"wrote {out}/steering.json and {out}/steering.md")


def register(app: typer.Typer) -> None:
    app.command("steer")(steer_command)
