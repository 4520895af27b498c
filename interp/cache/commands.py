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

    store = ActivationStore(cache_activations(config))
    hooks = ", ".join(store.hook_names)
    typer.echo(f"{store.path}: {len(store)} rows x {store.d_model} for {hooks}")


def register(app: typer.Typer) -> None:
    app.command("cache")(cache_command)
