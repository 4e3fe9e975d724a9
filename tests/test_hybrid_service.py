"""/search modes, fusions, where filters and document metadata through the service (in process), and a
calibrated hybrid index end to end."""

from pathlib import Path

import pytest

from retriever.data import load_beir
from retriever.filtering import calibrate
from retriever.pipeline import build_index, open_store
from tests.test_service import client_for


@pytest.fixture
def tiny_index(tiny_dir: Path, encoder, tmp_path: Path) -> Path:
    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    return path.parent


def test_modes_where_and_metadata(tiny_index: Path) -> None:
    with client_for(tiny_index) as client:
        body = client.post("/search", json={"query": "what causes earthquakes", "top_k": 3}).json()
        assert body["mode"] == "hybrid" and body["fusion"] == "convex"  # the default with a lexical side
        hit = body["results"][0]["hits"][0]
        assert hit["id"] == "d5" and hit["dense_score"] is not None and hit["lexical_score"] > 0
        assert {"search.dense", "search.lexical", "search.fuse"} <= set(body["timings_ms"])
        for mode in ("dense", "lexical"):
            assert client.post("/search", json={"query": "earthquakes", "mode": mode}).json()["mode"] == mode
        docs = [{"id": f"m{i}", "text": f"a volcano report number {i}", "metadata": {"year": 2000 + i, "lab": lab}}
                for i, lab in enumerate(["x", "y", "x", "z"])]
        assert client.post("/documents", json={"documents": docs}).status_code == 200
        assert client.get("/documents/m1").json()["metadata"] == {"year": 2001, "lab": "y"}
        for mode in ("dense", "lexical", "hybrid"):
            body = client.post("/search", json={"query": "volcano report", "mode": mode, "top_k": 10,
                                                "where": {"lab": {"in": ["x", "z"]}, "year": {"gte": 2001}}}).json()
            assert [h["id"] for h in body["results"][0]["hits"]] in (["m2", "m3"], ["m3", "m2"]), mode
        for bad in ({"where": {"year": {"near": 1}}}, {"mode": "sparse"}, {"fusion": "sum"}):
            r = client.post("/search", json={"query": "volcano"} | bad)
            assert r.status_code == 422, (bad, r.text)
        r = client.post("/search", json={"query": "volcano", "fusion": "calibrated"})
        assert r.status_code == 409 and "calibrate" in r.json()["detail"]


def test_calibrated_hybrid_index_serves_one_relevance(tiny_dir: Path, tiny_index: Path, encoder) -> None:
    from retriever.index import load_index

    index, manifest = load_index(tiny_index, use_gpu=False)
    report = calibrate(index, manifest, encoder, load_beir(tiny_dir), k=5, save_to=tiny_index,
                       store=open_store(tiny_index))
    assert report.hybrid["fusion"] in ("rrf", "convex", "tmm", "calibrated")
    threshold = report.hybrid["calibration"]["threshold"]
    with client_for(tiny_index) as client:
        body = client.post("/search", json={"query": "what causes earthquakes", "top_k": 12,
                                            "fusion": "calibrated"}).json()
        assert body["mode"] == "hybrid" and body["calibrated"] is True
        assert body["threshold"] == pytest.approx(threshold)
        hits = body["results"][0]["hits"]
        assert all(0 <= h["relevance"] <= 1 and h["relevance"] >= threshold for h in hits)
        assert [h["relevance"] for h in hits] == sorted((h["relevance"] for h in hits), reverse=True)
        everything = client.post("/search", json={"query": "what causes earthquakes", "top_k": 12,
                                                  "fusion": "calibrated", "filter": "none"}).json()
        assert len(everything["results"][0]["hits"]) >= len(hits)


def test_index_without_a_lexical_side_answers_409_and_defaults_to_dense(tiny_dir: Path, encoder,
                                                                        tmp_path: Path) -> None:
    """An index built before the lexical side existed (its docs.sqlite has no FTS table, like the 09:30
    zero-shot indexes): hybrid and lexical were a 500 ('no such table: lexical'); now a 409 that says what
    to do, the default mode is dense, and nothing is built behind the caller's back."""
    import sqlite3

    from retriever.docstore import DocumentStore
    from retriever.index import load_index
    from retriever.lexical import NoLexicalSideError
    from retriever.search import search

    _, _, path = build_index(load_beir(tiny_dir), encoder, "old", root=tmp_path / "indexes", use_gpu=False,
                             lexical=False)
    folder = path.parent
    with client_for(folder) as client:  # start-up fills docs.sqlite from the dataset, without a lexical side
        body = client.post("/search", json={"query": "what causes earthquakes", "top_k": 3}).json()
        assert body["mode"] == "dense" and body["results"][0]["hits"][0]["id"] == "d5"
        for mode in ("hybrid", "lexical"):
            r = client.post("/search", json={"query": "what causes earthquakes", "mode": mode})
            assert r.status_code == 409, (mode, r.text)
            assert "no lexical side" in r.json()["detail"] and "mode 'dense'" in r.json()["detail"]
        r = client.post("/search", json={"query": "earthquakes", "mode": "dense", "where": {"year": {"gte": 1}}})
        assert r.status_code == 200, r.text  # filters need the store, not the FTS table
    tables = {row[0] for row in sqlite3.connect(folder / "docs.sqlite").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "documents" in tables and "lexical" not in tables
    store = DocumentStore(folder / "docs.sqlite")
    with pytest.raises(NoLexicalSideError):  # the library refuses too, before SQLite's OperationalError
        store.lexical_pass("earthquakes")
    index, _ = load_index(folder, use_gpu=False)
    with pytest.raises(NoLexicalSideError):
        search(index, encoder, ["earthquakes"], 3, mode="hybrid", store=store)
