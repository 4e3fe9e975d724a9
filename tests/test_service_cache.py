"""Served texts never touch the on-disk embedding cache; the service's in-memory LRU (issue 18's hot path)."""

import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from retriever.data import load_beir
from retriever.encoders import TextEncoder, VectorLRU
from retriever.pipeline import build_index
from service.app import create_app
from service.settings import Settings


@pytest.fixture
def tiny_index(tiny_dir: Path, encoder, tmp_path: Path) -> Path:
    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    return path.parent


def disk_cache() -> dict[str, tuple[int, int]]:
    """Every file under the process's embedding cache, with its size and modification time."""
    root = Path(os.environ["RETRIEVER_CACHE_DIR"])
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_served_texts_do_not_write_the_disk_cache(tiny_index: Path, monkeypatch) -> None:
    calls: list[tuple[str, int]] = []
    original = TextEncoder._encode_model

    def counting(self, texts, side):
        calls.append((side, len(texts)))
        return original(self, texts, side)

    monkeypatch.setattr(TextEncoder, "_encode_model", counting)
    config = Settings(indexes=[str(tiny_index)], index_dir=tiny_index.parent, use_gpu=False, log_json=False)
    with TestClient(create_app(config)) as client:
        before = disk_cache()
        calls.clear()
        for _ in range(2):  # the second time from the LRU
            r = client.post("/search", json={"query": "a query no cache has seen 7f3a", "top_k": 3, "mode": "dense"})
            assert r.status_code == 200, r.text
        assert calls == [("query", 1)]
        assert client.post("/embed", json={"inputs": ["another unseen text 19c2"]}).status_code == 200
        r = client.post("/documents", json={"documents": [{"id": "new-1", "title": "T", "text": "fresh text 4d1e"}]})
        assert r.status_code == 200, r.text
        assert calls == [("query", 1), ("query", 1), ("document", 1)]
        assert disk_cache() == before  # nothing written, no query table created


def test_vector_lru_evicts_least_recently_used() -> None:
    lru = VectorLRU(capacity=2)
    lru.put("ns", [b"a", b"b"], np.array([[1.0], [2.0]], dtype=np.float32))
    assert [v[0] for v in lru.get("ns", [b"a"])] == [1.0]  # "a" is now the most recent
    lru.put("ns", [b"c"], np.array([[3.0]], dtype=np.float32))  # evicts "b"
    found = lru.get("ns", [b"a", b"b", b"c"])
    assert found[1] is None and float(found[0][0]) == 1.0 and float(found[2][0]) == 3.0
    assert lru.get("other", [b"a"]) == [None] and len(lru) == 2
    off = VectorLRU(capacity=0)
    off.put("ns", [b"a"], np.ones((1, 1), dtype=np.float32))
    assert len(off) == 0


def test_encode_in_memory_matches_encode_and_dedupes(encoder, monkeypatch) -> None:
    tower = encoder.query
    texts = ["plate tectonics", "coffee", "plate tectonics"]
    expected = tower.encode(texts, side="query")
    calls: list[int] = []
    original = TextEncoder._encode_model
    monkeypatch.setattr(TextEncoder, "_encode_model", lambda self, t, s: calls.append(len(t)) or original(self, t, s))
    lru = VectorLRU(8)
    got = tower.encode_in_memory(texts, "query", lru)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert calls == [2] and len(lru) == 2  # each distinct text once
    np.testing.assert_allclose(tower.encode_in_memory(texts[:2], "query", lru), expected[:2], atol=1e-6)
    assert calls == [2]


def test_served_hybrid_with_the_fts_pass_run_ahead_equals_the_library(tiny_index: Path) -> None:
    """The service runs each query's FTS pass beside its encoding; the hits must be the library's own."""
    from retriever.live import LiveIndex
    from retriever.search import search

    config = Settings(indexes=[str(tiny_index)], index_dir=tiny_index.parent, use_gpu=False, log_json=False)
    queries = ["what causes earthquakes", "cell glucose sugar", "light gravity black hole", "zzz unmatched"]
    with TestClient(create_app(config)) as client:
        body = client.post("/search", json={"queries": queries, "top_k": 5, "mode": "hybrid"}).json()
        served = [[(h["id"], round(h["score"], 5)) for h in r["hits"]] for r in body["results"]]
        assert "search.lexical_pass" in body["timings_ms"] and "fetch" in body["timings_ms"]
    live = LiveIndex.open(tiny_index, use_gpu=False)
    try:
        own = search(live.index, live.encoder, queries, 5, mode="hybrid", store=live.store)
    finally:
        live.close()
    assert served == [[(h.id, round(h.score, 5)) for h in hits] for hits in own.hits]
    assert served[0][0][0] == "d5" and served[1][0][0] == "d11"


def test_lexical_candidates_from_a_pass_run_ahead(tiny_index: Path) -> None:
    from retriever.docstore import STORE_FILE, DocumentStore

    store = DocumentStore(tiny_index / STORE_FILE)
    try:
        query, ids = "insulin lowers blood glucose", ["d11", "d1", "d7"]
        expected = store.lexical_candidates(query, 3, ids)
        assert store.lexical_candidates(query, 3, ids, done=store.lexical_pass(query)) == expected
        assert expected[0][0][0] == "d11" and set(expected[1]) == {"d11", "d1"}  # d7 shares no term
    finally:
        store.close()
