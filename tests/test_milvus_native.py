"""Issue 19: ``--store milvus`` runs lexical and hybrid search inside Milvus (its BM25 function and
``hybrid_search``), with ``where`` as a Milvus expression on both sides; the FTS5 store is not searched."""

from pathlib import Path

import numpy as np
import pytest

from retriever import fusion
from retriever.data import load_beir
from retriever.docstore import DocumentStore
from retriever.errors import RetrieverError
from retriever.pipeline import build_index, create_store
from retriever.search import FusionParams, search
from retriever.where import matches

pytest.importorskip("milvus_lite")
WORDS = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma".split()


def no_fts5(store: DocumentStore, monkeypatch) -> None:
    """Make every FTS5 search of the store fail, so a passing search proves Milvus answered."""
    def refuse(*args, **kwargs):
        raise AssertionError("the FTS5 side was searched")
    for name in ("lexical_search", "lexical_candidates", "lexical_pass", "ids"):
        monkeypatch.setattr(store, name, refuse)


@pytest.fixture
def tiny_milvus(tiny_dir: Path, encoder, tmp_path: Path):
    index, manifest, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path, use_gpu=False,
                                        backend="milvus")
    store = DocumentStore(path.parent / "docs.sqlite")
    yield index, store
    store.close()


def test_lexical_mode_runs_milvus_bm25(tiny_milvus, encoder, monkeypatch) -> None:
    index, store = tiny_milvus
    assert index.has_text
    no_fts5(store, monkeypatch)
    outcome = search(index, encoder, ["mitochondrion", "the of and", "adenosine receptors"], 5, mode="lexical",
                     store=store)
    assert [[h.id for h in row] for row in outcome.hits] == [["d2"], [], ["d6"]]  # rare terms; stop words only
    assert outcome.hits[0][0].score > 0 and outcome.hits[0][0].lexical == outcome.hits[0][0].score


def test_hybrid_rrf_is_milvus_hybrid_search_and_matches_ours(tiny_milvus, encoder, monkeypatch) -> None:
    index, store = tiny_milvus
    no_fts5(store, monkeypatch)
    queries = ["what causes earthquakes", "coffee tiredness", "zzzz unknownword"]
    vectors = encoder.encode_queries(queries)
    k, depth = 5, 4  # each side's list: max(depth, k) = 5 of the 12 documents
    outcome = search(index, encoder, queries, k, mode="hybrid", store=store, query_vectors=vectors,
                     params=FusionParams(fusion="rrf", depth=depth))
    assert "hybrid_search" in outcome.timings_ms  # Milvus fused them
    dense = index.search(vectors, k)
    lexical = index.bm25_search(queries, k)
    c = fusion.Candidates.from_hits([list(zip(i, map(float, s), strict=True)) for i, s in zip(dense.ids, dense.scores,
                                                                                            strict=True)], lexical)
    ours = fusion.rrf(c.dense, c.lexical)
    for i, row in enumerate(outcome.hits):
        expected = sorted(((ours[i, j], c.ids[i][j]) for j in range(len(c.ids[i])) if not c.pad[i, j]),
                          reverse=True)[:k]
        assert {h.id: h.score for h in row} == pytest.approx({d: v for v, d in expected}, abs=1e-6)
        # by hand: 1/(60 + dense rank) + 1/(60 + lexical rank), 0 for a list a document is not in
        for h in row:
            d_rank = dense.ids[i].index(h.id) + 1 if h.id in dense.ids[i] else None
            l_ids = [d for d, _ in lexical[i]]
            l_rank = l_ids.index(h.id) + 1 if h.id in l_ids else None
            assert h.score == pytest.approx(sum(1 / (60 + r) for r in (d_rank, l_rank) if r), abs=1e-6)
    assert lexical[2] == [] and [h.id for h in outcome.hits[2]] == dense.ids[2]  # no term: the dense list alone
    assert "d5" in {h.id for h in outcome.hits[0]} and "d6" in {h.id for h in outcome.hits[1]}


def test_convex_over_milvus_lists_fills_both_scores(tiny_milvus, encoder, monkeypatch) -> None:
    index, store = tiny_milvus
    no_fts5(store, monkeypatch)
    queries = ["caffeine and tiredness"]
    vectors = encoder.encode_queries(queries)
    outcome = search(index, encoder, queries, 12, mode="hybrid", store=store, query_vectors=vectors,
                     params=FusionParams(fusion="convex", alpha=0.5, depth=3))
    hits = outcome.hits[0]
    cosines = dict(zip(*index.search(vectors, 12).ids, index.search(vectors, 12).scores[0].tolist(), strict=True))
    bm25 = dict(index.bm25_search(queries, 12)[0])
    assert hits and all(h.dense == pytest.approx(cosines[h.id], abs=1e-5) for h in hits)
    assert all(h.lexical == pytest.approx(bm25.get(h.id, 0.0), rel=1e-5) for h in hits)  # completed, not guessed
    d = np.array([h.dense for h in hits])
    lx = np.array([h.lexical for h in hits])
    expected = 0.5 * (d - d.min()) / (d.max() - d.min()) + 0.5 * (lx - lx.min()) / (lx.max() - lx.min())
    np.testing.assert_allclose([h.score for h in hits], expected, atol=1e-5)


def synthetic(tmp_path: Path, n: int = 60):
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [(f"d{i}", "", " ".join(rng.choice(WORDS, 5)), {"year": 2000 + i % 20, "lang": ["en", "de"][i % 2],
                                                           "published": f"2021-{1 + i % 12:02d}-15"})
            for i in range(n)]
    index = create_store(8, "Flat", "milvus", tmp_path / "syn", use_gpu=False)
    index.add([d[0] for d in docs], vectors, documents=docs)
    store = DocumentStore(tmp_path / "syn" / "docs.sqlite", lexical=True)
    store.upsert(docs)
    return index, store, docs, vectors


@pytest.mark.parametrize("where", [{"lang": "de"}, {"year": {"gte": 2005, "lt": 2010}},
                                   {"lang": {"in": ["en"]}, "published": {"gte": "2021-06-01"}}, {"lang": "fr"}])
def test_where_never_returns_a_non_matching_document(where, tmp_path: Path, monkeypatch) -> None:
    index, store, docs, vectors = synthetic(tmp_path)
    meta = {d[0]: d[3] for d in docs}
    allowed = [i for i, d in enumerate(docs) if matches(where, d[3])]
    no_fts5(store, monkeypatch)
    query, qvec = ["alpha kappa sigma"], vectors[:1] * 0.9 + vectors[1:2] * 0.1
    for mode, fusion_name in (("dense", None), ("lexical", None), ("hybrid", "rrf"), ("hybrid", "tmm")):
        params = FusionParams(fusion=fusion_name or "rrf", depth=10)
        hits = search(index, None, query, 10, mode=mode, store=store, where=where, query_vectors=qvec,
                      params=params).hits[0]
        assert all(matches(where, meta[h.id]) for h in hits), (mode, fusion_name)
        if not allowed:
            assert hits == []
    if allowed:  # dense: the same top-k as brute force over the matching subset
        dense = search(index, None, query, 10, store=store, where=where, query_vectors=qvec).hits[0]
        brute = [docs[allowed[j]][0] for j in np.argsort(-(vectors[allowed] @ qvec[0]))[:10]]
        assert [h.id for h in dense] == brute
        lexical = search(index, None, query, 100, mode="lexical", store=store, where=where).hits[0]
        everything = [(d, s) for d, s in index.bm25_search(query, 100)[0] if matches(where, meta[d])]
        def ranked(pairs):  # ties in any order
            return sorted((-round(score, 4), doc) for doc, score in pairs)
        assert ranked((h.id, h.score) for h in lexical) == ranked(everything)  # the scores of an unfiltered search
    store.close()


def test_upsert_then_lexical_search_finds_the_new_text(tmp_path: Path) -> None:
    index, store, docs, vectors = synthetic(tmp_path, 20)
    index.add(["d3", "new"], vectors[:2], documents=[("d3", "Rewritten", "omega omega"),
                                                    ("new", "", "quokka habitat", {"lang": "en"})])
    assert [h.id for h in search(index, None, ["quokka"], 5, mode="lexical", store=store).hits[0]] == ["new"]
    assert [h.id for h in search(index, None, ["omega"], 5, mode="lexical", store=store).hits[0]] == ["d3"]
    assert search(index, None, ["quokka"], 5, mode="lexical", store=store, where={"lang": "de"}).hits[0] == []
    index.remove(["new"])
    assert search(index, None, ["quokka"], 5, mode="lexical", store=store).hits[0] == []
    with pytest.raises(RetrieverError, match="needs each document's title and text"):
        index.add(["x"], vectors[:1])  # a vector without its text would be invisible to BM25
    store.close()


def test_stems_are_made_here_since_milvus_lite_cannot_stem(tmp_path: Path) -> None:
    from retriever.index.backends import BACKENDS
    from retriever.index.milvus_store import MilvusStore

    docs = [("a", "Earthquakes", "running plates"), ("b", "", "coffee")]
    vectors = np.eye(2, dtype=np.float32)
    found = {}
    for stem in (True, False):
        options = BACKENDS["milvus"].create_options(tmp_path / f"s{int(stem)}", None, False)
        index = MilvusStore.create(2, "Flat", **options, stem=stem)
        index.add(["a", "b"], vectors, documents=docs)
        assert MilvusStore(options["uri"], options["collection"]).stemmed is stem  # read back from Milvus
        found[stem] = [[d for d, _ in row] for row in index.bm25_search(["earthquake", "runs", "plate"], 2)]
    assert found[True] == [["a"], ["a"], ["a"]]
    assert found[False] == [[], [], []]  # Milvus Lite 3.2.2's analyzer: no stemming


class HalfCosine:
    """A stand-in relevance model: (cosine + 1) / 2."""

    threshold = 0.5

    def relevance(self, vectors, cosines):
        return (np.asarray(cosines) + 1) / 2


def test_calibrated_index_rrf_takes_the_two_searches_and_ranks_as_hybrid_search(tiny_milvus, encoder,
                                                                                monkeypatch) -> None:
    from retriever.hybrid_calibration import HybridCalibration

    index, store = tiny_milvus
    no_fts5(store, monkeypatch)
    queries = ["what causes earthquakes", "coffee tiredness"]
    vectors = encoder.encode_queries(queries)
    native = search(index, encoder, queries, 5, mode="hybrid", store=store, query_vectors=vectors,
                    params=FusionParams(fusion="rrf", depth=5))
    calibration = HybridCalibration([0.0, 0.0, 0.0, 0.0], 0.0, threshold=0.4)
    ours = search(index, encoder, queries, 5, mode="hybrid", store=store, query_vectors=vectors,
                  relevance_model=HalfCosine(), params=FusionParams(fusion="rrf", depth=5, calibration=calibration))
    assert "hybrid_search" not in ours.timings_ms and ours.calibrated and ours.threshold == 0.4
    for a, b in zip(native.hits, ours.hits, strict=True):
        assert {h.id: h.score for h in a} == pytest.approx({h.id: h.score for h in b}, abs=1e-6)
        assert all(h.dense is not None and h.lexical is not None and 0 < h.relevance < 1 for h in b)


def test_calibration_fits_on_the_bm25_milvus_serves(tiny_milvus, tiny_dir: Path, encoder, monkeypatch) -> None:
    from retriever.hybrid_fit import labelled_candidates

    index, store = tiny_milvus
    no_fts5(store, monkeypatch)
    test = labelled_candidates(index, store, encoder, load_beir(tiny_dir), "test", 3)
    for i, query in enumerate(test.queries):
        bm25 = dict(index.bm25_search([query], 12)[0])
        for j, doc in enumerate(test.candidates.ids[i]):
            assert test.candidates.lexical[i, j] == pytest.approx(bm25.get(doc, 0.0), rel=1e-5)
