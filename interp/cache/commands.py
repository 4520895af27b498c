"""CLI: ``vsfa cache``, one option per :class:`~interp.cache.config.CacheConfig` field."""

from __future__ import annotations

import typer

from interp.cache.config import CacheConfig
from interp.options import config_command


@config_command(CacheConfig, short={"hooks": "--hook", "out": "-o", "quiet": "-q"})
def cache_command(config: CacheConfig) -> None:
    """Run prompts through a model and write residual activations (sharded safetensors)."""
    from interp.cache.run import cache_activations
    from interp.cache.store import ActivationStore
    from interp.errors import VSFAError
    from interp.parallel import current_ranks

    main = current_ranks().is_main
    try:
        out = cache_activations(config)
    except VSFAError:
        if main:
            raise
        raise typer.Exit(2) from None  # every rank stops; rank 0 says why, once
    if not main:
        return  # rank 0 reports the folder all ranks wrote
    store = ActivationStore(out)
    hooks = ", ".join(store.hook_names)
    typer.echo(f"{store.path}: {len(store)} rows x {store.d_model} for {hooks}")


def register(app: typer.Typer) -> None:
    app.command("cache")(cache_command)
