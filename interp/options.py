"""Configs declared once: a dataclass whose field docstrings are the CLI help.

Each stage's typed config is a dataclass with a docstring under every field::

    @dataclass
    class CacheConfig:
        model: str
        \"\"\"hub id or local model folder\"\"\"
        batch_size: int = 8
        \"\"\"prompts per forward\"\"\"

:func:`config_command` turns a function ``run(config: CacheConfig, ...)`` into a ``typer``
command with one option per field (``--batch-size``), the field's default and its docstring as
help, so nothing is declared twice and every field can be set from the command line. Lists are
comma-separated or repeated (``--alphas 0,0.5,1``, ``--acts a --acts b``), mappings are JSON, a
``Literal`` is checked against its values. :func:`config_from_mapping` builds the same
dataclasses from a YAML mapping; an unknown key is an error that names the key and the nearest
valid one.

The config modules stay free of heavy imports (torch, transformers, sae_lens), so building the
commands costs nothing at start-up.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from interp.errors import VSFAError
from interp.registry import nearest

C = TypeVar("C")


# ---- field docstrings ------------------------------------------------------------------------
@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literal under each field, bases first."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # pragma: no cover - classes made at run time
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a user sets (a leading underscore marks run-time bookkeeping)."""
    return [f for f in dataclasses.fields(cls) if not f.name.startswith("_")]


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---- types -----------------------------------------------------------------------------------
def _union_args(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _is_list(hint: Any) -> bool:
    return typing.get_origin(hint) in (list, tuple) or hint in (list, tuple)


def _element(hint: Any) -> Any:
    args = typing.get_args(hint)
    return args[0] if args else str


def _scalar(value: str, hint: Any, option: str) -> Any:
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise VSFAError(f"{option}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if hint is bool:
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise VSFAError(f"{option}: {value!r} is not true or false")
    if hint in (int, float):
        try:
            return hint(value)
        except ValueError:
            kind = "an int" if hint is int else "a float"
            raise VSFAError(f"{option}: {value!r} is not {kind}") from None
    return value


def convert(value: Any, hint: Any, option: str) -> Any:
    """The command-line text ``value`` as the field type ``hint`` (errors name ``option``)."""
    if value is None:
        return None
    args = _union_args(hint)
    if args is not None:
        kinds = [a for a in args if a is not type(None)]
        lists = [a for a in kinds if _is_list(a)]
        scalars = [a for a in kinds if not _is_list(a)]
        if lists and isinstance(value, str):
            items = convert(value, lists[0], option)
            # ``int | list[int]``: one value stays a scalar
            return items[0] if scalars and len(items) == 1 else items
        return convert(value, kinds[0], option) if len(kinds) == 1 else value
    if _is_list(hint):
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            return [_scalar(part, _element(hint), option) for part in parts]
        return list(value)
    if typing.get_origin(hint) is dict or hint is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise VSFAError(f"{option}: expected a JSON object ({error})") from None
            if not isinstance(value, dict):
                raise VSFAError(f"{option}: expected a JSON object, got {value!r}")
        return value
    if isinstance(value, str):
        return _scalar(value, hint, option)
    return value


def _takes_list(hint: Any) -> bool:
    args = _union_args(hint)
    return any(_is_list(a) for a in args) if args is not None else _is_list(hint)


def _typer_annotation(hint: Any) -> Any:
    """What typer parses (the rest is :func:`convert`'s job); a list option may be repeated."""
    if _takes_list(hint):
        return list[str] | None
    args = _union_args(hint)
    if args is not None:
        kinds = [a for a in args if a is not type(None)]
        return _typer_annotation(kinds[0]) if len(kinds) == 1 else str
    if hint in (bool, int, float, Path):
        return hint
    return str


MAX_METAVAR = 32


def _metavar(hint: Any) -> str | None:
    """``FLOAT,...`` for a list, ``add|ablate`` for a Literal, typer's own name otherwise."""
    args = _union_args(hint)
    if args is not None:
        kinds = [a for a in args if a is not type(None)]
        lists = [a for a in kinds if _is_list(a)]
        return _metavar(lists[0] if lists else kinds[0]) if kinds else None
    if _is_list(hint):
        element = _element(hint)
        return f"{getattr(element, '__name__', 'TEXT').upper()},..."
    if typing.get_origin(hint) is Literal:
        choices = "|".join(str(a) for a in typing.get_args(hint))
        # a long list of values would run past an 80-column help; the help text names them
        return choices if len(choices) <= MAX_METAVAR else "CHOICE"
    if typing.get_origin(hint) is dict or hint is dict:
        return "JSON"
    return None


def _shown_default(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


# ---- commands --------------------------------------------------------------------------------
def config_command(
    cls: type[C],
    *,
    short: Mapping[str, str] | None = None,
    arguments: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``run(config, **extra)`` -> a typer command with an option per field of ``cls``.

    ``short`` gives short flags (``{"out": "-o"}``); ``arguments`` names fields taken as
    positional arguments. ``run``'s other parameters (typer options of their own, such as
    ``force``) are kept after the fields.
    """
    short = dict(short or {})
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    fields = cli_fields(cls)

    def decorate(run: Callable[..., Any]) -> Callable[..., Any]:
        import typer

        own = list(inspect.signature(run).parameters.values())[1:]
        clash = {p.name for p in own} & {f.name for f in fields}
        if clash:
            raise TypeError(f"{run.__name__}: parameters {clash} shadow {cls.__name__} fields")
        parameters = []
        for f in fields:
            default = _default(f)
            help_text = docs.get(f.name, "")
            if _metavar(hints[f.name]) == "CHOICE":  # the values, where help text wraps
                values = ", ".join(str(a) for a in typing.get_args(hints[f.name]))
                help_text = f"{help_text} (one of: {values})".strip()
            annotation = _typer_annotation(hints[f.name])
            if f.name in arguments:
                info: Any = typer.Argument(
                    default if default is ... else _shown_default(default), help=help_text,
                    metavar=_metavar(hints[f.name]),
                )  # fmt: skip
            else:
                decls = [option_name(f.name)] + ([short[f.name]] if f.name in short else [])
                if annotation is bool and default is not ...:
                    decls = [f"{option_name(f.name)}/--no-{f.name.replace('_', '-')}"] + decls[1:]
                if _takes_list(hints[f.name]) and default is not ...:
                    # repeated or comma-separated; nothing given keeps the field's default
                    shown = _shown_default(default)
                    info = typer.Option(
                        None, *decls, help=help_text, metavar=_metavar(hints[f.name]),
                        show_default=shown if shown not in (None, "") else False,
                    )  # fmt: skip
                else:
                    info = typer.Option(
                        default if default is ... else _shown_default(default), *decls,
                        help=help_text, show_default=default is not None,
                        metavar=_metavar(hints[f.name]),
                    )  # fmt: skip
            parameters.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation
                )
            )
        own_hints = typing.get_type_hints(run)
        parameters += [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=own_hints.get(p.name, str))
            for p in own
        ]

        @functools.wraps(run)
        def command(**values: Any) -> Any:
            settings = {}
            for f in fields:
                value = values.pop(f.name)
                if _takes_list(hints[f.name]) and not isinstance(value, str):
                    if not value and _default(f) is not ...:
                        settings[f.name] = _default(f)  # the option was not given
                        continue
                    value = ",".join(value or ())  # `--acts a --acts b` is `--acts a,b`
                settings[f.name] = convert(value, hints[f.name], option_name(f.name))
            try:
                config = cls(**settings)
            except TypeError as error:  # pragma: no cover - a field the signature missed
                raise VSFAError(f"{cls.__name__}: {error}") from None
            return run(config, **values)

        del command.__wrapped__  # typer must read the generated signature, not run's
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {}
        command.config_class = cls  # type: ignore[attr-defined]
        return command

    return decorate


# ---- YAML and other mappings -----------------------------------------------------------------
def config_from_mapping(cls: type[C], data: Any, where: str, /, **fixed: Any) -> C:
    """``cls(**data)`` with values converted to the field types; an unknown key is an error
    naming ``where``, the key and the nearest valid one. ``fixed`` fields are set by the caller
    (and may not appear in ``data``)."""
    if not isinstance(data, Mapping):
        raise VSFAError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = [f.name for f in cli_fields(cls)]
    for key in data:
        if key not in known or key in fixed:
            hint = "" if key in fixed else nearest(str(key), known)
            reason = "is set by the experiment" if key in fixed else f"unknown key{hint}"
            raise VSFAError(f"{where}.{key}: {reason}")
    hints = typing.get_type_hints(cls)
    values = {key: convert(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**values, **fixed)
    except TypeError as error:
        raise VSFAError(f"{where}: {error}") from None
