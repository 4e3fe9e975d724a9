"""Types and helpers every layer shares: relevance judgements, runs, and the text an encoder sees."""

from __future__ import annotations

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> graded relevance (0 = judged non-relevant)."""
Run = dict[str, dict[str, float]]
"""query id -> document id -> score (higher is better)."""


def doc_text(title: str | None, text: str | None) -> str:
    """The text a document encoder sees: ``title + " " + text``, stripped. The embedding cache keys on this
    exact string, so it must never change (tests/test_shared.py pins it)."""
    return f"{title or ''} {text or ''}".strip()
