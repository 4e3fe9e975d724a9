"""The REST service on the tiny corpus, in process (FastAPI TestClient)."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from retriever.data import load_beir
from retriever.filtering import calibrate
from retriever.pipeline import build_index
from service.app import create_app
from service.settings import Settings


@pytest.fixture
def tiny_index(tiny_dir: Path, encoder, tmp_path: Path) -> Path:
    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    return path.parent


def client_for(index: Path, **settings) -> TestClient:
    config = Settings(indexes=[str(index)], index_dir=index.parent, use_gpu=False, log_json=False, **settings)
    return TestClient(create_app(config))


def test_search_rerank_embed_and_probes(tiny_index: Path) -> None:
    with client_for(tiny_index) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json()["indexes"] == ["tiny"]
        r = client.post("/search", json={"query": "what causes earthquakes", "top_k": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["calibrated"] is False and body["threshold"] is None
        hit = body["results"][0]["hits"][0]
        assert hit["id"] == "d5" and hit["title"] == "Plate tectonics" and hit["relevance"] is None
        assert set(body["timings_ms"]) >= {"encode", "search", "fetch"}

        batch = client.post("/search", json={"queries": ["coffee", "black hole light"], "top_k": 2,
                                             "rerank": True, "rerank_depth": 5, "return_text": False}).json()
        assert [len(r["hits"]) for r in batch["results"]] == [2, 2]
        top = batch["results"][1]["hits"]
        assert top[0]["rerank_score"] >= top[1]["rerank_score"] and top[0]["text"] is None

        rr = client.post("/rerank", json={"query": "vaccines", "documents": ["coffee beans", "vaccines train "
                                                                             "immunity", "volcano"],
                                          "top_n": 2, "return_documents": True}).json()
        assert [x["index"] for x in rr["results"]][0] == 1 and len(rr["results"]) == 2
        assert rr["results"][0]["document"] == {"text": "vaccines train immunity"}  # Cohere's shape

        emb = client.post("/embed", json={"inputs": ["a", "b"]}).json()  # TEI's shape: a bare list
        assert len(emb) == 2 and len(emb[0]) == 384
        oa = client.post("/v1/embeddings", json={"input": "hello", "model": "tiny"}).json()
        assert oa["object"] == "list" and oa["data"][0]["index"] == 0 and len(oa["data"][0]["embedding"]) == 384

        info = client.get("/info").json()
        assert info["indexes"]["tiny"]["calibrated"] is False and info["reranker"].startswith("bi-encoder")
        metrics = client.get("/metrics").text
        assert 'retriever_requests_total{method="POST",route="/search",status="200"}' in metrics
        assert "retriever_stage_seconds_bucket" in metrics and 'retriever_index_documents{index="tiny"} 12.0' in metrics
        assert "openapi" in client.get("/openapi.json").json()


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "needle"),
    [
        ("post", "/search", {"query": "x", "index": "nope"}, 404, "unknown index 'nope'"),
        ("post", "/search", {"query": "   "}, 422, "empty"),
        ("post", "/search", {"query": "x", "queries": ["y"]}, 422, "exactly one"),
        ("post", "/search", {"query": "x", "top_k": 5000}, 422, "RETRIEVER_MAX_TOP_K"),
        ("post", "/search", {"query": "x", "top_k": "many"}, 422, "top_k"),
        ("post", "/search", {"queries": ["q"] * 65}, 413, "RETRIEVER_MAX_BATCH"),
        ("post", "/search", {"query": "x" * 3000}, 413, "RETRIEVER_MAX_QUERY_CHARS"),
        ("post", "/search", {"query": "x", "filter": {"min_relevance": 0.5}}, 409, "no adapter"),
        ("post", "/search", {"query": "x", "filter": "sometimes"}, 422, "filter"),
        ("post", "/rerank", {"query": "x", "documents": ["d"] * 1001}, 413, "RETRIEVER_MAX_RERANK_DOCUMENTS"),
        ("post", "/rerank", {"query": "x", "documents": []}, 422, "documents"),
        ("post", "/embed", {"inputs": []}, 422, "inputs"),
        ("get", "/documents/nope", None, 404, "no document 'nope'"),
        ("delete", "/documents/nope", None, 404, "no document 'nope'"),
        ("post", "/documents", {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, 409, "duplicate"),
    ],
)
def test_bad_requests_get_clean_4xx(tiny_index: Path, method, path, payload, status, needle) -> None:
    with client_for(tiny_index) as client:
        r = getattr(client, method)(path, **({"json": payload} if payload is not None else {}))
        assert r.status_code == status, r.text
        assert needle in r.json()["detail"]


def test_malformed_json_and_body_limit(tiny_index: Path) -> None:
    with client_for(tiny_index, max_body_bytes=1000) as client:
        r = client.post("/search", content=b'{"query": ', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.json()["detail"]
        r = client.post("/search", json={"query": "x" * 1200})
        assert r.status_code == 413 and "RETRIEVER_MAX_BODY_BYTES" in r.json()["detail"]


def test_api_key_guards_all_but_probes(tiny_index: Path) -> None:
    with client_for(tiny_index, api_key="s3cret") as client:
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
        for path in ("/info", "/metrics"):
            assert client.get(path).status_code == 401
        assert client.post("/search", json={"query": "x"}).status_code == 401
        ok = client.post("/search", json={"query": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        bad = client.post("/search", json={"query": "x"}, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and "API key" in bad.json()["detail"]


def test_documents_upsert_get_delete_and_reload(tiny_index: Path) -> None:
    with client_for(tiny_index) as client:
        doc = {"id": "d99", "title": "Tides", "text": "The moon's gravity pulls the oceans and causes tides."}
        r = client.post("/documents", json={"documents": [doc]})
        assert r.status_code == 200 and r.json()["count"] == 13
        assert client.get("/documents/d99").json() == doc
        hits = client.post("/search", json={"query": "why are there ocean tides", "top_k": 1}).json()
        assert hits["results"][0]["hits"][0]["id"] == "d99"
        version = client.get("/info").json()["indexes"]["tiny"]["manifest"]["version"]
        reloaded = client.post("/admin/reload", json={}).json()
        assert reloaded["documents"] == 13 and reloaded["version"] == version
        assert client.delete("/documents/d99").json()["count"] == 12
        assert client.get("/documents/d99").status_code == 404
        hits = client.post("/search", json={"query": "why are there ocean tides", "top_k": 12}).json()
        assert "d99" not in [h["id"] for h in hits["results"][0]["hits"]]
    with client_for(tiny_index) as client:  # a restart sees the same state
        assert client.get("/info").json()["indexes"]["tiny"]["documents"] == 12


def test_calibrated_index_filters_by_default(tiny_dir: Path, tiny_index: Path, encoder) -> None:
    from retriever.index import load_index

    index, manifest = load_index(tiny_index, use_gpu=False)
    report = calibrate(index, manifest, encoder, load_beir(tiny_dir), k=5, save_to=tiny_index)
    with client_for(tiny_index) as client:
        body = client.post("/search", json={"query": "what causes earthquakes", "top_k": 12}).json()
        assert body["calibrated"] is True and body["threshold"] == pytest.approx(report.threshold)
        hits = body["results"][0]["hits"]
        assert all(h["relevance"] >= report.threshold for h in hits)
        everything = client.post("/search", json={"query": "what causes earthquakes", "top_k": 12,
                                                   "filter": "none"}).json()
        assert len(everything["results"][0]["hits"]) == 12 and everything["threshold"] is None
        strict = client.post("/search", json={"query": "what causes earthquakes", "top_k": 12,
                                              "filter": {"min_relevance": 1.0}}).json()
        assert strict["results"][0]["hits"] == [] or all(h["relevance"] >= 1.0 for h in strict["results"][0]["hits"])
        assert json.dumps(client.get("/info").json()["indexes"]["tiny"]["adapter"]["threshold"])
