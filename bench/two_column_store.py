"""bench.hybrid_tune's scratch lexical side: a (title, body) FTS5 table ranked with a title weight."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from retriever.docstore import STORE_FILE, DocumentStore
from retriever.lexical import fts5

TWO_COLUMNS = f"""
CREATE VIRTUAL TABLE lexical2 USING fts5(title, body, content='', tokenize='{fts5.TOKENIZER}');
INSERT INTO lexical2(rowid, title, body) SELECT rowid, title, text FROM documents;
"""


class TwoColumnStore(DocumentStore):
    """A scratch copy of the store whose lexical pass ranks a (title, body) FTS5 table with column weights."""

    title_weight = 1.0

    def weighted(self, title_weight: float) -> TwoColumnStore:
        """A view of the same connection that ranks with another title weight."""
        view = TwoColumnStore.__new__(TwoColumnStore)
        view.__dict__.update(self.__dict__)
        view.title_weight = title_weight
        return view

    def lexical_pass(self, query: str, where=None) -> tuple:
        expression = fts5.match_expression(query)
        if expression is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        with self._lock:
            rows = self._conn.execute("SELECT rowid, -bm25(lexical2, ?, 1.0) FROM lexical2 WHERE lexical2 MATCH ? "
                                      "ORDER BY rowid", (self.title_weight, expression)).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        table = np.array(rows, dtype=np.float64)
        return table[:, 0].astype(np.int64), table[:, 1]


def two_column_copy(store: DocumentStore, folder: Path) -> TwoColumnStore:
    shutil.copy(store.path, folder / STORE_FILE)
    scratch = TwoColumnStore(folder / STORE_FILE)
    scratch._conn.executescript(TWO_COLUMNS)
    return scratch
