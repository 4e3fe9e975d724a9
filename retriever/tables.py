"""Looking a name up in an extension-point table (losses, reranker objectives and architectures, vector-store
backends): one helper, so that every table refuses an unknown name with the same message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from retriever.errors import RetrieverError

Entry = TypeVar("Entry")


class UnknownNameError(RetrieverError, ValueError):
    """A name that is not in its table. A ``ValueError`` too, so that pydantic validators report it as a
    validation error; a ``RetrieverError``, so that the CLI prints one ``error:`` line and the service a 4xx."""


def unknown_name_message(table: Mapping[str, object], kind: str, name: str) -> str:
    return f"unknown {kind} '{name}': one of {', '.join(table)}"


def table_entry(table: Mapping[str, Entry], kind: str, name: str) -> Entry:
    """``table[name]``; an unknown name raises :class:`UnknownNameError` naming ``kind`` and the known names."""
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message(table, kind, name)) from None
