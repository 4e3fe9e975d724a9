"""A durable document store (SQLite, WAL, synchronous=FULL): the source of truth for texts.

An acknowledged write is committed here before the index is touched; on start-up
:func:`reconcile` brings the index back in line with the store, so a kill -9 between the two
loses nothing that was acknowledged.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class DocumentStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def upsert(self, docs: Iterable[tuple[str, str, str]]) -> None:
        """Insert or replace ``(id, title, text)`` rows in one durable transaction."""
        rows = list(docs)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO documents(id, title, text) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET title = excluded.title, text = excluded.text",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def delete(self, ids: list[str]) -> int:
        with self._lock:
            cursor = self._conn.executemany("DELETE FROM documents WHERE id = ?", [(i,) for i in ids])
            return cursor.rowcount

    def get(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """``{id: (title, text)}`` for the ids that exist (one query per 500 ids)."""
        out: dict[str, tuple[str, str]] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for doc_id, title, text in self._conn.execute(
                    f"SELECT id, title, text FROM documents WHERE id IN ({marks})", chunk
                ):
                    out[doc_id] = (title, text)
        return out

    def ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT id FROM documents")}

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._conn.close()
