"""FTS5's ``bm25()`` in numpy, over an in-memory snapshot of the FTS5 postings.

FTS5 spends most of a hybrid query scoring: an OR of ~9 SciFact terms matches ~2,800 of 5,183 documents
and ``bm25()`` costs ~12-20 ms of the pass (the MATCH alone ~4 ms). The snapshot reads every (term, document,
frequency) once through an ``fts5vocab`` instance table, precomputes each posting's BM25 contribution with
the same formula and constants as SQLite (k1 = 1.2, b = 0.75, idf = log((N - n + 0.5) / (n + 0.5)), 1e-6 when
not positive), and scores a query by summing its terms' postings in query order, as ``bm25()`` does:
the same matches and the same scores (to float rounding) in ~1 ms.

The snapshot is a read cache, never a source of truth: FTS5 stays the durable index, and the store uses a
snapshot only while no write has happened since it was read (see :class:`~retriever.docstore.DocumentStore`).
Query terms are stemmed by FTS5 itself (a scratch in-memory table with the same tokenizer), so the snapshot
never guesses how Porter or unicode61 would cut a word; a term that is not exactly one token (a phrase) makes
the caller fall back to FTS5.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

import numpy as np

from retriever.lexical.fts5 import TOKENIZER, query_terms

K1, B = 1.2, 0.75  # SQLite's bm25() constants
STEM_CACHE = 65536  # distinct raw query terms whose stems are kept


@dataclass
class Bm25Snapshot:
    """Postings grouped by term: ``rowids[a:b]`` and ``weights[a:b]`` (each posting's BM25 contribution) for
    ``slices[term] = (a, b)``."""

    slices: dict[str, tuple[int, int]]
    rowids: np.ndarray
    weights: np.ndarray
    n_rows: int

    @staticmethod
    def attach(conn: sqlite3.Connection, table: str = "lexical") -> None:
        """The ``fts5vocab`` instance table :meth:`read` reads (a temp table: the database is not written)."""
        conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{table}_instances USING fts5vocab(main, {table}, "
                     "instance)")

    @classmethod
    def read(cls, conn: sqlite3.Connection, table: str = "lexical") -> Bm25Snapshot:
        """Read every posting of ``table`` (in the connection's current read transaction; see :meth:`attach`)."""
        rows = conn.execute(f"SELECT term, doc, count(*) FROM temp.{table}_instances GROUP BY term, doc "
                            "ORDER BY term, doc").fetchall()
        n_rows = conn.execute("SELECT count(*) FROM documents").fetchone()[0]  # a row per document (triggers)
        if not rows:
            return cls({}, np.zeros(0, dtype=np.int64), np.zeros(0), n_rows)
        terms = np.array([r[0] for r in rows], dtype=object)
        rowids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        freq = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
        starts = np.r_[0, np.flatnonzero(terms[1:] != terms[:-1]) + 1]
        ends = np.r_[starts[1:], len(rows)]
        lengths = np.zeros(int(rowids.max()) + 1)
        np.add.at(lengths, rowids, freq)  # tokens per document: FTS5's column size
        avgdl = lengths.sum() / max(n_rows, 1)
        hits = (ends - starts).astype(np.float64)
        idf = np.log((n_rows - hits + 0.5) / (hits + 0.5))
        idf = np.where(idf <= 0.0, 1e-6, idf)
        per_posting = np.repeat(idf, ends - starts)
        weights = per_posting * ((freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * lengths[rowids] / avgdl)))
        slices = {terms[a]: (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}
        return cls(slices, rowids, weights, n_rows)

    def scores(self, stems: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(rowids ascending, BM25)`` of every document matching a stem, as ``fts5.all_scores``."""
        parts = [self.slices[s] for s in stems if s in self.slices]
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rowids = np.concatenate([self.rowids[a:b] for a, b in parts])
        weights = np.concatenate([self.weights[a:b] for a, b in parts])
        matched, where = np.unique(rowids, return_inverse=True)
        return matched, np.bincount(where, weights=weights, minlength=len(matched))  # sums in query order


class Stemmer:
    """Each raw query term's tokens, by FTS5's own tokenizer (an in-memory contentless table), cached."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._conn.execute(f"CREATE VIRTUAL TABLE tok USING fts5(body, content='', tokenize='{TOKENIZER}')")
        self._conn.execute("CREATE VIRTUAL TABLE tok_instances USING fts5vocab(tok, instance)")
        self._cache: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def stems(self, query: str) -> list[str] | None:
        """One stem per distinct query term, in order (duplicates kept: FTS5 scores each phrase); None when
        a term is not exactly one token, which only FTS5's phrase matching scores right."""
        terms = query_terms(query)
        with self._lock:
            new = [t for t in terms if t not in self._cache]
            if new:
                self._tokenize(new)
            tokens = [self._cache[t] for t in terms]
        if any(len(t) != 1 for t in tokens):
            return None
        return [t[0] for t in tokens]

    def _tokenize(self, terms: list[str]) -> None:
        rows = list(enumerate(terms))
        self._conn.executemany("INSERT INTO tok(rowid, body) VALUES (?, ?)", rows)
        found: dict[int, list[str]] = {}
        for doc, term in self._conn.execute("SELECT doc, term FROM tok_instances ORDER BY doc, offset"):
            found.setdefault(doc, []).append(term)
        self._conn.executemany("INSERT INTO tok(tok, rowid, body) VALUES ('delete', ?, ?)", rows)
        if len(self._cache) + len(terms) > STEM_CACHE:
            self._cache.clear()
        for i, term in rows:
            self._cache[term] = tuple(found.get(i, ()))
