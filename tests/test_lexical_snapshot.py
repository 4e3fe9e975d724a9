"""FTS5's bm25() in numpy over a snapshot of the postings: hand-computed values, equality with FTS5 through
upserts, deletes and filters, and the rule that a snapshot older than the last write is never used."""

import math
from pathlib import Path

import numpy as np
import pytest

from retriever.docstore import DocumentStore
from retriever.lexical import fts5
from retriever.lexical.snapshot import Bm25Snapshot


def _store(tmp_path: Path) -> DocumentStore:
    store = DocumentStore(tmp_path / "docs.sqlite", lexical=True, snapshot=True)
    store.upsert([("a", "", "apple apple banana"), ("b", "", "banana cherry"), ("c", "", "cherry")])
    return store


def test_snapshot_bm25_equals_hand_computed_values_and_fts5(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.refresh_lexical_snapshot()
    # N = 3, avgdl = (3 + 2 + 1) / 3 = 2; "apple": n = 1, idf = ln(2.5 / 1.5); doc a: tf 2, dl 3
    apple = math.log(2.5 / 1.5) * (2 * 2.2) / (2 + 1.2 * (0.25 + 0.75 * 3 / 2))
    # "banana": n = 2, ln(1.5 / 2.5) < 0, so SQLite's idf is 1e-6; doc b: tf 1, dl 2
    banana_b = 1e-6 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 2))
    banana_a = 1e-6 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 2))
    rowids, scores = store.lexical_pass("apples and bananas")  # Porter: apples -> appl, as apple
    assert rowids.tolist() == [1, 2]
    assert scores == pytest.approx([apple + banana_a, banana_b], rel=1e-12)
    fts_rowids, fts_scores = fts5.all_scores(store._conn, "apples and bananas")
    assert fts_rowids.tolist() == [1, 2] and fts_scores == pytest.approx(scores, rel=1e-12)


def _random_store(tmp_path: Path, seed: int = 0) -> tuple[DocumentStore, np.random.Generator, list[str]]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "running", "runs", "cells", "cell"]
    store = DocumentStore(tmp_path / "docs.sqlite", lexical=True, snapshot=True)
    store.upsert([(f"d{i}", str(rng.choice(words)), " ".join(rng.choice(words, size=int(rng.integers(0, 9)))),
                   {"tag": str(rng.choice(["x", "y"]))}) for i in range(200)])
    return store, rng, words


def _assert_same_as_fts5(store: DocumentStore, queries: list[str], where=None) -> None:
    from retriever.where import to_sql

    condition, args = to_sql(where)
    for q in queries:
        rowids, scores = store.lexical_pass(q, where)
        expected_rowids, expected = fts5.all_scores(store._conn, q, condition, args)
        assert rowids.tolist() == expected_rowids.tolist(), q
        np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-15)


def test_snapshot_matches_fts5_through_writes_and_filters(tmp_path: Path) -> None:
    store, rng, words = _random_store(tmp_path)
    queries = [" ".join(rng.choice(words, size=int(rng.integers(1, 6)))) for _ in range(30)] + ["run cell cell"]
    assert store.refresh_lexical_snapshot()
    _assert_same_as_fts5(store, queries)
    _assert_same_as_fts5(store, queries, {"tag": "x"})
    store.upsert([("d3", "omega", "omega omega new text"), ("n1", "", "sigma beta")])  # a replacement, a new one
    store.delete(["d5", "d7"])
    _assert_same_as_fts5(store, queries)  # stale snapshot: FTS5 answers
    assert store.refresh_lexical_snapshot()
    _assert_same_as_fts5(store, queries)


def test_a_stale_snapshot_is_never_used(tmp_path: Path, monkeypatch) -> None:
    store, _, _ = _random_store(tmp_path)
    assert store.refresh_lexical_snapshot()
    original = fts5.all_scores
    monkeypatch.setattr(fts5, "all_scores", lambda *a, **k: pytest.fail("FTS5 used with a current snapshot"))
    assert len(store.lexical_pass("alpha beta")[0]) > 0
    monkeypatch.setattr(fts5, "all_scores", original)
    read = Bm25Snapshot.read

    def write_meanwhile(conn):  # a write commits while the postings are being read
        snapshot = read(conn)
        store.upsert([("late", "", "zebra")])
        return snapshot

    monkeypatch.setattr(Bm25Snapshot, "read", staticmethod(write_meanwhile))
    assert store.refresh_lexical_snapshot() is False
    monkeypatch.setattr(Bm25Snapshot, "read", read)
    rowids, _ = store.lexical_pass("zebra")  # found: FTS5 answered, not the discarded snapshot
    assert len(rowids) == 1


def test_a_term_that_is_not_one_token_goes_to_fts5(tmp_path: Path, monkeypatch) -> None:
    store = _store(tmp_path)
    assert store.refresh_lexical_snapshot()
    store._stemmer._cache["apple"] = ("app", "le")  # as if the tokenizer cut it in two: a phrase
    calls = []
    original = fts5.all_scores
    monkeypatch.setattr(fts5, "all_scores", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert store.lexical_pass("apple")[0].tolist() == [1] and calls == [1]


def test_refresh_waits_for_writes_to_pause(tmp_path: Path, monkeypatch) -> None:
    import retriever.docstore as docstore

    store = _store(tmp_path)
    store.lexical_pass("apple")  # stale right after the writes: FTS5 answers, and no re-read starts yet
    assert store._refresh is None
    monkeypatch.setattr(docstore, "REFRESH_QUIET_S", 0.0)
    store.lexical_pass("apple")  # writes have paused: the background re-read starts
    store._refresh.join(timeout=30)
    assert store._snapshot_generation == store._generation
