"""BM25 over SQLite FTS5, in the same database (and so the same transactions) as the document texts.

The FTS table is contentless (the text lives once, in ``documents``) and kept in step by triggers, so an
upsert or delete commits the text and its postings together: a kill -9 can never leave them apart.
Tokenizer: Porter stemming over unicode61 (diacritics folded). A query is the OR of its distinct
non-stop-word terms, each quoted (no FTS5 syntax reaches the engine from user text), ranked by FTS5's
``bm25()`` (k1 = 1.2, b = 0.75, fixed by SQLite).
"""

from __future__ import annotations

import re
import sqlite3

import numpy as np

LEXICAL_VERSION = "1"  # bump when the tokenizer or the indexed text changes: the table is then rebuilt
TOKENIZER = "porter unicode61 remove_diacritics 2"
META_KEY = "lexical_version"
TOKEN = re.compile(r"[^\W_]+")  # unicode61's token characters: letters and digits

# bm25s' English list, so both engines drop the same words from queries
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)

SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(body, content='', tokenize='{TOKENIZER}');
CREATE TRIGGER IF NOT EXISTS lexical_insert AFTER INSERT ON documents BEGIN
    INSERT INTO lexical(rowid, body) VALUES (new.rowid, new.title || ' ' || new.text);
END;
CREATE TRIGGER IF NOT EXISTS lexical_delete AFTER DELETE ON documents BEGIN
    INSERT INTO lexical(lexical, rowid, body) VALUES ('delete', old.rowid, old.title || ' ' || old.text);
END;
CREATE TRIGGER IF NOT EXISTS lexical_update AFTER UPDATE OF title, text ON documents BEGIN
    INSERT INTO lexical(lexical, rowid, body) VALUES ('delete', old.rowid, old.title || ' ' || old.text);
    INSERT INTO lexical(rowid, body) VALUES (new.rowid, new.title || ' ' || new.text);
END;
"""
DROP = """
DROP TRIGGER IF EXISTS lexical_insert; DROP TRIGGER IF EXISTS lexical_delete;
DROP TRIGGER IF EXISTS lexical_update; DROP TABLE IF EXISTS lexical;
"""


def installed_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    return row[0] if row else None


def install(conn: sqlite3.Connection) -> bool:
    """Create (or rebuild, when its version is stale) the FTS table from the stored texts, in one
    transaction. Returns True when it did anything."""
    if installed_version(conn) == LEXICAL_VERSION:
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(DROP) + _statements(SCHEMA):
            conn.execute(statement)
        conn.execute("INSERT INTO lexical(rowid, body) SELECT rowid, title || ' ' || text FROM documents")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_KEY, LEXICAL_VERSION))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


def _statements(script: str) -> list[str]:
    """Split a script at top-level semicolons (trigger bodies end with ``END;``)."""
    out, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                out.append(current.strip())
            current = ""
    return out


def query_terms(query: str) -> list[str]:
    """The query's distinct non-stop-word tokens, in order."""
    return list(dict.fromkeys(t for t in TOKEN.findall(query.lower()) if t not in STOP_WORDS))


def match_expression(query: str) -> str | None:
    """``"term" OR "term" ...`` over the query's distinct non-stop-word tokens; None when none is left."""
    terms = query_terms(query)
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


def search(conn: sqlite3.Connection, query: str, k: int, where_sql: str = "",
           where_args: tuple = ()) -> list[tuple[str, float]]:
    """Top-``k`` ``(id, score)`` by BM25 (higher is better), optionally restricted to documents matching
    ``where_sql`` over ``documents`` (applied inside the ranking, not after it)."""
    expression = match_expression(query)
    if expression is None:
        return []
    restrict = f"AND lexical.rowid IN (SELECT rowid FROM documents WHERE {where_sql})" if where_sql else ""
    rows = conn.execute(
        f"SELECT d.id, -s.score FROM (SELECT rowid, bm25(lexical) AS score FROM lexical "
        f"WHERE lexical MATCH ? {restrict} ORDER BY score, rowid LIMIT ?) AS s "
        "JOIN documents AS d ON d.rowid = s.rowid ORDER BY s.score, s.rowid",
        (expression, *where_args, k),
    )
    return [(doc_id, float(score)) for doc_id, score in rows]


def all_scores(conn: sqlite3.Connection, query: str, where_sql: str = "",
               where_args: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """``(rowids, BM25)`` of every document matching a query term, rowids ascending (FTS5's order). One
    pass: FTS5 scores every match to rank them anyway, and a rowid restriction costs more than it saves."""
    expression = match_expression(query)
    rows = conn.execute(f"SELECT rowid, -bm25(lexical) FROM lexical WHERE lexical MATCH ? "
                        f"{'AND rowid IN (SELECT rowid FROM documents WHERE ' + where_sql + ')' if where_sql else ''}"
                        "ORDER BY rowid", (expression, *where_args)).fetchall() if expression else []
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    table = np.array(rows, dtype=np.float64)
    return table[:, 0].astype(np.int64), table[:, 1]


def top(rowids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best ``(rowid, score)``, ties by rowid (as :func:`search` orders them)."""
    if k <= 0 or not len(scores):
        return []
    order = np.lexsort((rowids, -scores))[:k]
    return [(int(rowids[i]), float(scores[i])) for i in order]


def lookup(rowids: np.ndarray, scores: np.ndarray, wanted: list[int]) -> list[float | None]:
    """Each wanted rowid's score (None: it matches no query term)."""
    if not len(rowids):
        return [None] * len(wanted)
    positions = np.searchsorted(rowids, wanted)
    return [float(scores[p]) if p < len(rowids) and rowids[p] == w else None for p, w in zip(positions, wanted,
                                                                                            strict=True)]
