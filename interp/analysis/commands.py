"""CLI: ``vsfa latents diff`` (options: :class:`interp.analysis.config.DiffConfig`)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.analysis.config import DiffConfig
from interp.options import config_command

latents_app = typer.Typer(help="Model diffing in SAE latent space.", no_args_is_help=True)


@latents_app.command("diff")
@config_command(DiffConfig, short={"quiet": "-q"})
def diff_command(
    config: DiffConfig,
    sae: Path = typer.Option(..., help="SAE folder (sae_lens format)"),
    base_acts: Path = typer.Option(..., help="activation folder cached from the base model"),
    tuned_acts: Path = typer.Option(..., help="the same prompts cached from the tuned model"),
    out: Path = typer.Option(..., "--out", "-o", help="latents.json to write"),
    model: str | None = typer.Option(
        None, help="model for token text and logit effects (default: the base cache's model)"
    ),
    load_model: bool = typer.Option(
        True,
        "--load-model/--no-model",
        help="load the model to decode example tokens and compute logit effects (--no-model: "
        "token ids only, no logit effects)",
    ),
    device: str = typer.Option("cpu", help="cpu, cuda or auto"),
) -> None:
    """Rank SAE latents by how much fine-tuning changed them; pick the persona candidate."""
    from interp.analysis.diff import diff_latents
    from interp.cache import ActivationStore
    from interp.models.loading import resolve_device
    from interp.sae import load_sae

    sae_model = load_sae(sae, device=str(resolve_device(device)))
    base, tuned = ActivationStore(base_acts), ActivationStore(tuned_acts)
    tokenizer = unembedding = None
    if load_model:
        from interp.models import load_vlm

        name = model or base.manifest.get("model")
        if name:
            vlm = load_vlm(name, device="cpu", dtype="float32")
            tokenizer, unembedding = vlm.tokenizer, vlm.unembedding().detach()
    result = diff_latents(
        sae_model, base, tuned, config=config, tokenizer=tokenizer, unembedding=unembedding,
        out=out, sae_name=str(sae),
    )  # fmt: skip
    typer.echo(
        f"wrote {out}: {result['n_prompts']} prompts, {result['n_significant_increased']} "
        f"latents significantly increased ({result['significance']})"
    )
    for entry in result["latents"][:5]:
        typer.echo(
            f"  latent {entry['index']:6d} delta {entry['delta']:+.4f} "
            f"freq {entry['base_freq']:.3f}->{entry['tuned_freq']:.3f} "
            f"p_adj {entry['p_adjusted']:.2g} d_z {entry['effect_size']:+.2f}"
        )
    selected = result["selected"]
    typer.echo(f"selected {selected['latents']} (runners-up {selected['runners_up']})")
    split = result["split"]
    if split["kind"] == "none":
        typer.echo(f"warning: {split['warning']}", err=True)
    else:
        typer.echo(
            f"selection: {split['n_selection']} prompts ({split['kind']} split); "
            f"{split['n_eval']} held out for evaluation (eval_ids in {out})"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(latents_app, name="latents")
