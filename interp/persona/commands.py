"""CLI: ``vsfa persona extract|score ...`` (options: :mod:`interp.persona.config`)."""

from __future__ import annotations

import typer

from interp.options import config_command
from interp.persona.config import ExtractConfig, FrontierConfig, ScoreConfig

persona_app = typer.Typer(
    help="Persona directions: contrastive contexts, directions per layer, scoring candidates.",
    no_args_is_help=True,
)

SHORT = {"out": "-o", "quiet": "-q", "model": "-m"}


# ---- extract -----------------------------------------------------------------------------------
@persona_app.command("extract")
@config_command(ExtractConfig, short=SHORT)
def extract_command(
    config: ExtractConfig,
    force: bool = typer.Option(False, help="extract again even if --out is current"),
) -> None:
    """Persona vector and logistic probe per layer at the decision position; held-out AUROC."""
    from interp.persona.extract import extract_persona

    meta = extract_persona(config, force=force)
    typer.echo(
        f"wrote {config.out}: {meta['n_contexts']} contexts ({len(meta['fit_probe_ids'])} fit / "
        f"{len(meta['heldout_probe_ids'])} held-out probes)"
    )
    for hook in meta["hooks"]:
        scores = meta["auroc"][hook]
        mark = "  <- chosen" if hook == meta["chosen_hook"] else ""
        typer.echo(
            f"  {hook}: held-out AUROC persona {scores['persona']:.3f} "
            f"(pooled {scores['persona_pooled']:.3f}), probe {scores['probe']:.3f}{mark}"
        )


# ---- score -------------------------------------------------------------------------------------
@persona_app.command("score")
@config_command(ScoreConfig, short=SHORT)
def score_command(config: ScoreConfig) -> None:
    """Persona AUROC, cosine with the persona vector and share of the fine-tuning shift of each
    candidate (SAE latents, difference of means, persona vector, probe direction)."""
    from interp.persona.score import score_candidates

    result = score_candidates(config)
    typer.echo(f"wrote {config.out}/score.json at {result['hook']}")
    for entry in result["candidates"][:8]:
        typer.echo(
            f"  {entry['name']:>18}: AUROC {entry['persona_auroc']:.3f}  cosine "
            f"{entry['cosine_persona']:+.3f}  shift share {entry['vsfa_shift_share']:.3f} "
            f"(p {entry['shift_share_p']:.3g})"
        )


# ---- frontier ----------------------------------------------------------------------------------
@persona_app.command("frontier")
@config_command(FrontierConfig, short=SHORT)
def frontier_command(config: FrontierConfig) -> None:
    """Steering frontier: each method's ASR change against its capability cost on held-out
    items, beside random controls (frontier.json, frontier.html)."""
    from interp.persona.frontier import frontier

    result = frontier(config)
    typer.echo(
        f"wrote {config.out}/frontier.json and frontier.html: {len(result['eval_items'])} items, "
        f"{len(result['seeds'])} tuned seed(s), {result['n_random']} random controls per method"
    )
    for name, entry in result["methods"].items():
        top, p = entry["headline"], entry["random_rank_p"]
        typer.echo(
            f"  {name:>28}: ASR {100 * top['asr_change_at_cap5']:+.1f} points at alpha "
            f"{top['alpha']:g} (capability {100 * top['capability_change']:+.1f})"
            + ("" if p is None else f", rank p {p:.3f}")
        )


def register(app: typer.Typer) -> None:
    app.add_typer(persona_app, name="persona")
