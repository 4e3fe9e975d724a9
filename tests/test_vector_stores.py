"""One conformance suite, run against every vector store backend: FAISS and Milvus (Lite)."""

from pathlib import Path

import numpy as np
import pytest

from retriever.data import load_beir
from retriever.filtering import calibrate, load_relevance_model
from retriever.index import IndexManifest, load_index, save_index
from retriever.pipeline import build_index, create_store, search_texts

pytest.importorskip("pymilvus")
BACKENDS = ["faiss", "milvus"]


def unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def texts(ids: list[str]) -> list[tuple[str, str, str]]:
    """Documents for ``add`` (a Milvus collection indexes their texts for BM25; FAISS ignores them)."""
    return [(d, "", f"text of {d}") for d in ids]


def restart(backend: str) -> None:
    """Drop cached clients, as a new process would start without them."""
    if backend == "milvus":
        from retriever.index import milvus_store

        for client in milvus_store._clients.values():
            client.close()
        milvus_store._clients.clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_top_k_add_remove_and_restart(backend: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs, queries = unit(rng, 300), unit(rng, 8)
    store = create_store(16, "Flat", backend, tmp_path / "idx", use_gpu=False)
    store.add([f"d{i}" for i in range(300)], docs, documents=texts([f"d{i}" for i in range(300)]))
    assert len(store) == 300 and store.dimension == 16 and "d7" in store
    result = store.search(queries, 10)
    expected = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    assert result.ids == [[f"d{i}" for i in row] for row in expected]
    np.testing.assert_allclose(result.scores[0], np.sort(queries[0] @ docs.T)[::-1][:10], rtol=1e-4)

    assert store.remove(["d7", "nope"]) == 1 and "d7" not in store and len(store) == 299
    store.add(["d8"], docs[[7]], documents=texts(["d8"]))  # upsert: d8 now holds d7's vector
    assert len(store) == 299 and store.search(docs[[7]], 1).ids == [["d8"]]
    store.add(["new"], docs[[9]], documents=texts(["new"]))
    assert store.ids == {f"d{i}" for i in range(300)} - {"d7"} | {"new"}

    before = store.search(queries, 10).ids
    manifest = IndexManifest(name="idx", model_id="m", model_fingerprint="fp", dimension=16)
    save_index(store, manifest, tmp_path / "idx")
    restart(backend)
    loaded, meta = load_index(tmp_path / "idx", use_gpu=False)
    assert meta.backend == backend and len(loaded) == 300
    assert loaded.search(queries, 10).ids == before
    assert loaded.search(docs[[7]], 1).ids == [["d8"]]


def test_backends_agree_on_a_real_corpus_and_on_filtering(tiny_dir: Path, encoder, tmp_path: Path) -> None:
    dataset = load_beir(tiny_dir)
    queries = ["what causes earthquakes", "why does coffee keep you awake", "how do vaccines work"]
    outcomes = {}
    for backend in BACKENDS:
        index, manifest, path = build_index(dataset, encoder, f"tiny-{backend}", root=tmp_path, use_gpu=False,
                                            backend=backend)
        calibrate(index, manifest, encoder, dataset, k=5, save_to=path.parent)
        restart(backend)
        loaded, new_manifest = load_index(path.parent, use_gpu=False)
        model = load_relevance_model(path.parent, new_manifest)
        outcomes[backend] = search_texts(loaded, encoder, queries, k=5, relevance_model=model,
                                         min_relevance=model.threshold)
        unfiltered = search_texts(loaded, encoder, queries, k=12)
        assert [len(h) for h in unfiltered.hits] == [12, 12, 12]
    faiss_hits, milvus_hits = outcomes["faiss"].hits, outcomes["milvus"].hits
    assert [[h.id for h in row] for row in faiss_hits] == [[h.id for h in row] for row in milvus_hits]
    for a_row, b_row in zip(faiss_hits, milvus_hits, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)
    assert outcomes["milvus"].calibrated


@pytest.mark.parametrize("backend", BACKENDS)
def test_service_upserts_and_deletes_on_every_backend(backend: str, tiny_dir: Path, encoder, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path, use_gpu=False, backend=backend)
    settings = Settings(indexes=[str(path.parent)], index_dir=tmp_path, use_gpu=False, log_json=False)
    doc = {"id": "d99", "title": "Tides", "text": "The moon's gravity pulls the oceans and causes tides."}
    with TestClient(create_app(settings)) as client:
        assert client.post("/documents", json={"documents": [doc]}).json()["count"] == 13
        top = client.post("/search", json={"query": "why are there ocean tides", "top_k": 1}).json()
        assert top["results"][0]["hits"][0]["id"] == "d99"
        assert client.delete("/documents/d5").json()["count"] == 12
    restart(backend)
    with TestClient(create_app(settings)) as client:
        info = client.get("/info").json()["indexes"]["tiny"]
        assert info["documents"] == 12 and info["manifest"]["backend"] == backend
        hits = client.post("/search", json={"query": "what causes earthquakes", "top_k": 12}).json()
        assert "d5" not in [h["id"] for h in hits["results"][0]["hits"]]
