"""CLI: ``vsfa families``, ``vsfa info`` and ``vsfa generate``."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.console import quiet_libraries
from interp.errors import VSFAError
from interp.models.placement import check_placement


def families_command() -> None:
    """List the supported VLM families."""
    from interp.models.families import FAMILIES

    for family in FAMILIES.values():
        hooks = "TransformerBridge + native hooks" if family.bridge else "native hooks only"
        if family.needs_video_processor and family.bridge:
            hooks += " (images; videos need torchvision)"
        typer.echo(f"{family.name:12s} {family.model_class:40s} {hooks}")


MODEL_HELP = "hub id or local model folder (or give it with --model)"
QUIET_HELP = "no library progress bars, logging or warnings"
DEVICE_MAP_HELP = (
    "place the model over devices instead of moving it to --device: auto (GPUs, then CPU, then "
    "disk), balanced, sequential, one device, MODULE=DEVICE,... or a .json map"
)
MAX_MEMORY_HELP = "per-device caps for --device-map auto, e.g. 0=20GiB,cpu=60GiB"


def _model(positional: str | None, option: str | None) -> str:
    """The model given positionally (the older form) or with ``--model``; one, not both."""
    if positional and option and positional != option:
        raise VSFAError(f"two models given: {positional!r} and --model {option!r}; give one")
    model = option or positional
    if not model:
        raise VSFAError("give the model: --model ID_OR_FOLDER")
    return model


def info_command(
    model_arg: str | None = typer.Argument(None, metavar="[MODEL]", help=MODEL_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help="hub id or local model folder"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    family: str | None = typer.Option(None, help="force a family instead of detecting it"),
    trust_remote_code: bool = typer.Option(False, help="run the model repo's own code"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Load a model and show its family, layers, hidden size and hook names."""
    from interp.models import load_vlm

    model = _model(model_arg, model)
    if quiet:
        quiet_libraries()
    vlm = load_vlm(
        model, family=family, device="cpu", adapter=adapter, trust_remote_code=trust_remote_code
    )
    typer.echo(f"model:      {vlm.name_or_path}")
    typer.echo(f"family:     {vlm.family.name} ({vlm.family.model_class})")
    typer.echo(f"layers:     {vlm.n_layers}")
    typer.echo(f"d_model:    {vlm.d_model}")
    typer.echo(f"hooks:      {vlm.hook_name(0)} ... {vlm.hook_name(vlm.n_layers - 1)}")
    typer.echo(f"parameters: {sum(p.numel() for p in vlm.model.parameters()):,}")


def generate_command(
    model_arg: str | None = typer.Argument(None, metavar="[MODEL]", help=MODEL_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help="hub id or local model folder"),
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="user text (repeat for a batch)"),
    image: list[Path] | None = typer.Option(None, "--image", "-i", help="one per --prompt"),
    system: str | None = typer.Option(None, help="system / defense text"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    max_new_tokens: int = typer.Option(64, min=1),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto"),
    device_map: str | None = typer.Option(None, help=DEVICE_MAP_HELP),
    max_memory: str | None = typer.Option(None, help=MAX_MEMORY_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Greedy chat generation for a few prompts (with optional images)."""
    check_placement(device_map, max_memory)  # bad values fail before anything loads
    from interp.images import open_image
    from interp.models import load_vlm

    model = _model(model_arg, model)
    if quiet:
        quiet_libraries()
    images = [open_image(path) for path in image] if image else [None] * len(prompt)
    if len(images) != len(prompt):
        raise VSFAError(f"got {len(images)} --image for {len(prompt)} --prompt; give one each")
    vlm = load_vlm(
        model,
        device=device,
        dtype=dtype,
        adapter=adapter,
        device_map=device_map,
        max_memory=max_memory,
    )
    for text in vlm.generate(images, prompt, system=system, max_new_tokens=max_new_tokens):
        typer.echo(text)


def register(app: typer.Typer) -> None:
    """Add ``families``, ``info`` and ``generate`` to the ``vsfa`` app."""
    app.command("families")(families_command)
    app.command("info")(info_command)
    app.command("generate")(generate_command)
