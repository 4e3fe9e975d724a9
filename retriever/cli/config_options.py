"""Typer options generated from pydantic configs, so that a command's flags cannot drift from its config.

Every field becomes ``--field-name`` (``None`` = not given, so YAML and defaults apply), typed from the
field's annotation, with the field's description (and its choices, for a ``Literal``) as help. A boolean
field becomes a ``--name/--no-name`` pair.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

SCALARS = (bool, int, float, str, Path)


def _cli_type(annotation: Any) -> tuple[type, tuple[str, ...]]:
    """The option type of a field annotation, and its choices when it is a ``Literal``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0])
    if typing.get_origin(annotation) is Literal:
        return str, tuple(str(a) for a in typing.get_args(annotation))
    if annotation in SCALARS:
        return annotation, ()
    raise TypeError(f"no CLI type for config annotation {annotation!r}")


def _help(field: FieldInfo, choices: tuple[str, ...]) -> str:
    text = field.description or ""
    if choices and not all(c in text for c in choices):
        text = f"{text} [{' | '.join(choices)}]".strip()
    return text


def config_fields(models: Sequence[type[BaseModel]], skip: Sequence[str] = ()) -> dict[str, FieldInfo]:
    """Every field of ``models`` once (the first model that has it gives its help), in declaration order."""
    fields: dict[str, FieldInfo] = {}
    for model in models:
        for name, field in model.model_fields.items():
            if name not in skip and name not in fields:
                fields[name] = field
    return fields


def config_parameters(models: Sequence[type[BaseModel]], skip: Sequence[str] = (),
                      aliases: dict[str, tuple[str, ...]] | None = None) -> list[inspect.Parameter]:
    """One keyword parameter with a ``typer.Option(None, ...)`` default per config field."""
    aliases = aliases or {}
    parameters = []
    for name, field in config_fields(models, skip).items():
        kind, choices = _cli_type(field.annotation)
        flag = "--" + name.replace("_", "-")
        decls = (f"{flag}/--no-{name.replace('_', '-')}",) if kind is bool else aliases.get(name, (flag,))
        option = typer.Option(None, *decls, help=_help(field, choices), show_default=False)
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=kind | None))
    return parameters


def config_command(run: Callable[..., None], models: Sequence[type[BaseModel]], extra: Sequence[inspect.Parameter],
                   skip: Sequence[str] = (), aliases: dict[str, tuple[str, ...]] | None = None) -> Callable[..., None]:
    """A typer command whose options are ``extra`` plus the fields of ``models``; it calls
    ``run(**extra values, overrides={field: value or None})``."""
    extra_names = {p.name for p in extra}
    parameters = [*extra, *config_parameters(models, skip=[*skip, *extra_names], aliases=aliases)]

    def command(**values: Any) -> None:
        overrides = {k: v for k, v in values.items() if k not in extra_names}
        run(**{k: values[k] for k in extra_names}, overrides=overrides)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = run.__doc__
    command.__name__ = run.__name__
    return command
