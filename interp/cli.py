"""The ``vsfa`` command. Thin: it parses options and calls the stage functions.

Each stage keeps its commands in ``interp/<stage>/commands.py`` and is registered below with one
line. A :class:`~interp.errors.VSFAError` is printed as one line (no traceback) with exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from interp.errors import VSFAError

app = typer.Typer(
    name="vsfa",
    help="VSFA workbench: train, evaluate, cache, SAE, diff, steer and show VLM safety.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command("families")
def families_command() -> None:
    """List the supported VLM families."""
    from interp.models import FAMILIES

    for family in FAMILIES.values():
        hooks = "TransformerBridge + native hooks" if family.bridge else "native hooks only"
        typer.echo(f"{family.name:12s} {family.model_class:40s} {hooks}")


@app.command("info")
def info_command(
    model: str = typer.Argument(..., help="hub id or local model folder"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    family: str | None = typer.Option(None, help="force a family instead of detecting it"),
    trust_remote_code: bool = typer.Option(False, help="run the model repo's own code"),
) -> None:
    """Load a model and show its family, layers, hidden size and hook names."""
    from interp.models import load_vlm

    vlm = load_vlm(
        model, family=family, device="cpu", adapter=adapter, trust_remote_code=trust_remote_code
    )
    typer.echo(f"model:      {vlm.name_or_path}")
    typer.echo(f"family:     {vlm.family.name} ({vlm.family.model_class})")
    typer.echo(f"layers:     {vlm.n_layers}")
    typer.echo(f"d_model:    {vlm.d_model}")
    typer.echo(f"hooks:      {vlm.hook_name(0)} ... {vlm.hook_name(vlm.n_layers - 1)}")
    typer.echo(f"parameters: {sum(p.numel() for p in vlm.model.parameters()):,}")


@app.command("generate")
def generate_command(
    model: str = typer.Argument(..., help="hub id or local model folder"),
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="user text (repeat for a batch)"),
    image: list[Path] | None = typer.Option(None, "--image", "-i", help="one per --prompt"),
    system: str | None = typer.Option(None, help="system / defense text"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    max_new_tokens: int = typer.Option(64, min=1),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto"),
) -> None:
    """Greedy chat generation for a few prompts (with optional images)."""
    from interp.images import open_image
    from interp.models import load_vlm

    images = [open_image(path) for path in image] if image else [None] * len(prompt)
    if len(images) != len(prompt):
        raise VSFAError(f"got {len(images)} --image for {len(prompt)} --prompt; give one each")
    vlm = load_vlm(model, device=device, dtype=dtype, adapter=adapter)
    for text in vlm.generate(images, prompt, system=system, max_new_tokens=max_new_tokens):
        typer.echo(text)


# Each stage registers its commands from ``interp/<stage>/commands.py`` (``register(app)``).
STAGE_COMMANDS = (
    "interp.organism.commands",
    "interp.data.commands",
    "interp.train.commands",
    "interp.eval.commands",
    "interp.sae.commands",
    "interp.analysis.commands",
    "interp.steer.commands",
    "interp.viz.commands",
    "interp.pipeline.commands",
)


def _register_stages() -> None:
    import importlib

    for module_name in STAGE_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(app)


_register_stages()


def main() -> None:
    try:
        app()
    except VSFAError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
