"""CLI: ``vsfa cache``, one option per :class:`~interp.cache.config.CacheConfig` field."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from interp.cache.config import CacheConfig
from interp.options import config_command


def repeatable(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let the list options ``names`` of a :func:`~interp.options.config_command` also be given
    several times: ``--acts a --acts b`` reads as ``--acts a,b``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        parameters = []
        for parameter in inspect.signature(command).parameters.values():
            if parameter.name in names:
                info = parameter.default
                if isinstance(info.default, str):
                    info.default = [info.default]
                parameter = parameter.replace(annotation=list[str])
            parameters.append(parameter)

        @functools.wraps(command)
        def joined(**values: Any) -> Any:
            for name in names:
                if isinstance(values.get(name), (list, tuple)):
                    values[name] = ",".join(values[name])
            return command(**values)

        del joined.__wrapped__  # typer must read the signature below
        joined.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        return joined

    return decorate


@repeatable("hooks")
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
