"""The lexical queries of :class:`retriever.docstore.DocumentStore` (BM25 over its FTS5 index, or over a
numpy snapshot of the postings while no write has happened since it was read), as a mixin: the store
keeps the connection, the lock, the write generation and the snapshot's refresh."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np

from retriever.lexical import NoLexicalSideError, fts5
from retriever.lexical.snapshot import Bm25Snapshot, Stemmer
from retriever.where import Where, to_sql


def no_lexical_message(index: str, mode: str = "lexical and hybrid") -> str:
    return (f"index '{index}' has no lexical side (built before it existed, or with --no-lexical), so {mode} "
            "search cannot run: use mode 'dense', or rebuild it with 'retriever index build' without --no-lexical "
            "(the embedding cache spares re-encoding the corpus)")



class LexicalQueries:
    """BM25 passes over the store's documents; the attributes below are set by the store."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock
    _generation: int
    _snapshot: Bm25Snapshot | None
    _snapshot_generation: int
    _stemmer: Stemmer | None

    def _refresh_in_background(self) -> None:  # the store's
        raise NotImplementedError

    def _require_lexical(self) -> None:
        """Under the lock: a clear error, not SQLite's 'no such table', when the FTS index is absent."""
        if fts5.installed_version(self._conn) != fts5.LEXICAL_VERSION:
            raise NoLexicalSideError(no_lexical_message(self.path.parent.name))

    def lexical_search(self, queries: list[str], k: int, where: Where | None = None) -> list[list[tuple[str, float]]]:
        """BM25 top-``k`` ``(id, score)`` per query; ``where`` restricts the ranking to matching documents."""
        if self._stemmer is not None and self._snapshot_generation == self._generation:
            return [self.lexical_candidates(q, k, [], where)[0] for q in queries]
        condition, args = to_sql(where)
        with self._lock:
            self._require_lexical()
            return [fts5.search(self._conn, q, k, condition, args) for q in queries]

    def lexical_scores(self, query: str, ids: list[str]) -> dict[str, float]:
        """BM25 of the given documents for ``query`` (absent: no query term matches, a score of 0)."""
        return self.lexical_candidates(query, 0, ids)[1]

    def lexical_pass(self, query: str, where: Where | None = None) -> tuple:
        """The FTS pass of :meth:`lexical_candidates` alone (``(rowids, BM25)`` of every match), so that a
        caller can run it before the query vector exists (the service overlaps it with the encoding)."""
        condition, args = to_sql(where)
        stems = self._stemmer.stems(query) if self._stemmer is not None else None
        with self._lock:
            self._require_lexical()
            current = self._snapshot if self._snapshot_generation == self._generation else None
            if current is None or stems is None:
                if self._stemmer is not None and current is None:
                    self._refresh_in_background()
                return fts5.all_scores(self._conn, query, condition, args)
            allowed = (np.fromiter((r for (r,) in self._conn.execute(
                f"SELECT rowid FROM documents WHERE {condition}", args)), dtype=np.int64) if condition else None)
        rowids, scores = current.scores(stems)
        if allowed is not None:
            keep = np.isin(rowids, allowed)
            rowids, scores = rowids[keep], scores[keep]
        return rowids, scores

    def lexical_candidates(self, query: str, depth: int, ids: list[str], where: Where | None = None,
                           done: tuple | None = None) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """In one FTS pass: the top-``depth`` ``(id, BM25)`` and the BM25 of ``ids`` (those matching a term);
        ``done``: that pass, already run by :meth:`lexical_pass` with the same ``where``."""
        if done is None:
            done = self.lexical_pass(query, where)
        rowids, scores = done
        with self._lock:
            ranked = fts5.top(rowids, scores, depth)
            top_ids = self._column_for("rowid", "id", [r for r, _ in ranked])
            known = self._column_for("id", "rowid", ids)
        best = [(top_ids[r], s) for r, s in ranked if r in top_ids]
        found = fts5.lookup(rowids, scores, list(known.values()))
        return best, {d: s for d, s in zip(known, found, strict=True) if s is not None}

    def _column_for(self, key: str, value: str, keys: list) -> dict:
        out: dict = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            out.update(self._conn.execute(f"SELECT {key}, {value} FROM documents WHERE {key} IN "
                                          f"({','.join('?' * len(chunk))})", chunk))
        return out
