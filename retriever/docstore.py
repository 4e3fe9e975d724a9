"""A durable document store (SQLite, WAL, synchronous=FULL): the source of truth for texts, metadata and
the lexical (FTS5) index.

An acknowledged write is committed here before the vector index is touched; on start-up
:func:`reconcile` brings the vector index back in line with the store, so a kill -9 between the two
loses nothing that was acknowledged. The lexical index lives in the same database and is written by
triggers in the same transaction as the text, so it never needs reconciling.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from retriever.lexical import fts5
from retriever.lexical.queries import LexicalQueries, no_lexical_message
from retriever.lexical.snapshot import Bm25Snapshot, Stemmer
from retriever.where import Where, to_sql

__all__ = ["COMPLETE", "STORE_FILE", "DocumentStore", "no_lexical_message"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
STORE_FILE = "docs.sqlite"  # in the index folder, beside the version folders
COMPLETE = "complete"  # meta key: the store holds every document of the index
REFRESH_QUIET_S = 1.0  # a lexical snapshot is re-read only after this long without a write
Row = tuple[str, str, str] | tuple[str, str, str, dict | None]


def _with_metadata(row: Row) -> tuple[str, str, str, str]:
    metadata = row[3] if len(row) > 3 else None
    return row[0], row[1], row[2], json.dumps(metadata or {}, separators=(",", ":"))


class DocumentStore(LexicalQueries):
    """Texts, metadata and the FTS5 index in one SQLite file; the lexical queries are :class:`LexicalQueries`."""

    def __init__(self, path: Path, lexical: bool | None = None, snapshot: bool = False) -> None:
        """``lexical``: True builds the FTS index if absent, False leaves it out, None keeps what is there.
        ``snapshot``: score lexical passes in numpy from a snapshot of the postings while no write has
        happened since it was read (:mod:`retriever.lexical.snapshot`), re-read in the background after
        writes; FTS5's ``bm25()`` meanwhile. Same matches, same scores."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(documents)")}
        if "metadata" not in columns:  # a store written before metadata existed
            self._conn.execute("ALTER TABLE documents ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'")
        self._lock = threading.Lock()
        self._generation = 0  # committed writes since opening
        self._last_write = 0.0  # time.monotonic() of the last commit
        self._snapshot: Bm25Snapshot | None = None
        self._snapshot_generation = -1
        self._stemmer = Stemmer() if snapshot else None
        self._refresh: threading.Thread | None = None
        present = fts5.installed_version(self._conn) is not None
        if lexical or (lexical is None and present):
            fts5.install(self._conn)  # no-op when current; rebuilds a stale version from the texts

    @property
    def has_lexical(self) -> bool:
        with self._lock:
            return fts5.installed_version(self._conn) == fts5.LEXICAL_VERSION

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def upsert(self, docs: Iterable[Row]) -> None:
        """Insert or replace ``(id, title, text[, metadata])`` rows (and their postings) in one durable
        transaction."""
        rows = [_with_metadata(row) for row in docs]
        with self._write_transaction():
            self._conn.executemany(
                "INSERT INTO documents(id, title, text, metadata) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET title = excluded.title, text = excluded.text, "
                "metadata = excluded.metadata",
                rows,
            )

    def delete(self, ids: list[str]) -> int:
        with self._write_transaction():
            cursor = self._conn.executemany("DELETE FROM documents WHERE id = ?", [(i,) for i in ids])
        return cursor.rowcount

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """One durable write under the lock: committed on success, rolled back on any error; a commit counts
        as a write (the lexical snapshot goes stale)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._generation += 1
            self._last_write = time.monotonic()

    def get(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """``{id: (title, text)}`` for the ids that exist (one query per 500 ids)."""
        return {d: (title, text) for d, (title, text, _) in self._rows(ids, "title, text, metadata").items()}

    def metadata(self, ids: list[str]) -> dict[str, dict]:
        return {d: json.loads(m) for d, (_, _, m) in self._rows(ids, "title, text, metadata").items()}

    def _rows(self, ids: list[str], columns: str) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for doc_id, *rest in self._conn.execute(
                    f"SELECT id, {columns} FROM documents WHERE id IN ({marks})", chunk
                ):
                    out[doc_id] = tuple(rest)
        return out

    def ids(self, where: Where | None = None) -> set[str]:
        """Every stored id, or those whose metadata match ``where``."""
        condition, args = to_sql(where)
        sql = "SELECT id FROM documents" + (f" WHERE {condition}" if condition else "")
        with self._lock:
            return {row[0] for row in self._conn.execute(sql, args)}

    def refresh_lexical_snapshot(self) -> bool:
        """Read the postings on a connection of its own (writes go on meanwhile, WAL) and keep the snapshot
        only if no write committed since this began; True when kept."""
        with self._lock:
            started = self._generation
        reader = sqlite3.connect(self.path, isolation_level=None)
        try:
            Bm25Snapshot.attach(reader)
            reader.execute("PRAGMA query_only=1")
            reader.execute("BEGIN")  # one read snapshot for the postings and the row count
            snapshot = Bm25Snapshot.read(reader)
            reader.execute("COMMIT")
        finally:
            reader.close()
        with self._lock:
            if self._generation != started:
                return False
            self._snapshot, self._snapshot_generation = snapshot, started
        return True

    def _refresh_in_background(self) -> None:
        """Under the lock: start a refresh unless one is running or writes are still arriving (a read during
        a stream of writes would be discarded, and costs a core for seconds); a later pass starts it."""
        if self._refresh is not None and self._refresh.is_alive():
            return
        if time.monotonic() - self._last_write < REFRESH_QUIET_S:
            return
        self._refresh = threading.Thread(target=self._refresh_quietly, name="lexical-snapshot", daemon=True)
        self._refresh.start()

    def _refresh_quietly(self) -> None:
        try:
            self.refresh_lexical_snapshot()
        except sqlite3.Error as exc:  # the FTS5 path keeps answering; the next pass tries again
            logging.getLogger(__name__).warning("lexical snapshot of %s not refreshed: %s", self.path, exc)

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._conn.close()
