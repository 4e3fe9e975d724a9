"""The lexical side (FTS5 in the document store), filtered search against brute force, hybrid search."""

from pathlib import Path

import numpy as np
import pytest

from retriever.data import load_beir
from retriever.docstore import DocumentStore
from retriever.errors import RetrieverError
from retriever.index import FaissIndex
from retriever.lexical import match_expression
from retriever.live import LiveIndex
from retriever.pipeline import build_index
from retriever.search import FusionParams, search
from retriever.where import matches


def test_fts5_follows_upserts_deletes_and_replacements(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "docs.sqlite", lexical=True)
    store.upsert([("a", "Running dogs", "The dogs were running"), ("b", "Cats", "a cat sleeps all day"),
                  ("c", "Birds", "birds fly south")])
    assert [d for d, _ in store.lexical_search(["dog runs"], 5)[0]] == ["a"]  # Porter: runs/running, dogs/dog
    store.upsert([("a", "Stones", "nothing moves here")])  # a replacement drops the old postings
    assert store.lexical_search(["dog"], 5) == [[]]
    assert [d for d, _ in store.lexical_search(["stones"], 5)[0]] == ["a"]
    store.delete(["b"])
    assert store.lexical_search(["cat"], 5) == [[]]
    assert store.lexical_search(["the of"], 5) == [[]]  # only stop words: no query
    store.close()
    reopened = DocumentStore(tmp_path / "docs.sqlite")  # keeps its lexical side
    assert reopened.has_lexical and [d for d, _ in reopened.lexical_search(["birds"], 5)[0]] == ["c"]


def test_user_text_never_reaches_fts5_syntax() -> None:
    assert match_expression('NEAR("a b") OR title:x* AND -y "') == '"near" OR "b" OR "title" OR "x" OR "y"'


def _random_corpus(tmp_path: Path, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    ids = [f"d{i}" for i in range(n)]
    metadata = [{"year": int(rng.integers(2000, 2024)), "tag": str(rng.choice(["a", "b", "c"])),
                 "date": f"20{rng.integers(10, 24)}-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}"} for _ in ids]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 8)))) for _ in ids]
    store = DocumentStore(tmp_path / "docs.sqlite", lexical=True)
    store.upsert([(d, "", t, m) for d, t, m in zip(ids, texts, metadata, strict=True)])
    return ids, vectors, metadata, store


@pytest.mark.parametrize("where", [{"tag": "a"}, {"year": {"gte": 2010, "lt": 2016}},
                                   {"tag": {"in": ["b", "c"]}, "date": {"gte": "2015-01-01"}}])
def test_filtered_searches_equal_brute_force_over_the_matching_subset(tmp_path: Path, where) -> None:
    ids, vectors, metadata, store = _random_corpus(tmp_path)
    index = FaissIndex.create(16, "Flat", use_gpu=False)
    index.add(ids, vectors)
    subset = [i for i, m in enumerate(metadata) if matches(where, m)]
    assert store.ids(where) == {ids[i] for i in subset} and 10 < len(subset) < len(ids)
    queries = vectors[:5] + 0.1
    out = search(index, None, ["alpha omega"] * 5, 10, store=store, where=where, query_vectors=queries)
    for row, hits in zip(queries, out.hits, strict=True):
        expected = [ids[subset[j]] for j in np.argsort(-(vectors[subset] @ row), kind="stable")[:10]]
        assert [h.id for h in hits] == expected
    lexical = search(index, None, ["alpha omega"], 10, mode="lexical", store=store, where=where).hits[0]
    everything = store.lexical_search(["alpha omega"], len(ids))[0]
    assert [h.id for h in lexical] == [d for d, _ in everything if d in store.ids(where)][:10]
    assert all(matches(where, metadata[ids.index(h.id)]) for h in lexical)
    hybrid = search(index, None, ["alpha omega"] * 5, 10, mode="hybrid", store=store, where=where,
                    query_vectors=queries)
    assert all(matches(where, metadata[ids.index(h.id)]) for hits in hybrid.hits for h in hits)


def test_hybrid_scores_every_candidate_on_both_sides(tmp_path: Path) -> None:
    ids, vectors, _, store = _random_corpus(tmp_path, seed=1)
    index = FaissIndex.create(16, "Flat", use_gpu=False)
    index.add(ids, vectors)
    out = search(index, None, ["gamma sigma"], 20, mode="hybrid", store=store, query_vectors=vectors[:1],
                 params=FusionParams("convex", 0.5, depth=10))
    assert out.mode == "hybrid" and {"dense", "lexical", "complete", "fuse"} <= set(out.timings_ms)
    exact = store.lexical_scores("gamma sigma", ids)
    for hit in out.hits[0]:
        assert hit.dense == pytest.approx(float(vectors[ids.index(hit.id)] @ vectors[0]), abs=1e-5)
        assert hit.lexical == pytest.approx(exact.get(hit.id, 0.0))
    with pytest.raises(RetrieverError):
        search(index, None, ["x"], 5, mode="hybrid", store=store, query_vectors=vectors[:1],
               params=FusionParams("calibrated"))


def test_rare_token_the_dense_model_misses_is_found_in_hybrid_mode(tiny_dir: Path, encoder, tmp_path: Path) -> None:
    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    live = LiveIndex.open(path.parent, encoder=encoder, use_gpu=False)
    assert live.has_lexical
    target = ("tides", "Ocean tides", "Ocean tides rise and fall twice a day as the moon pulls the water; the pattern "
              "was first logged by the Vrendhal survey.")
    near_misses = [(f"v{i}", "", f"The {name} survey archive.")  # what the dense model takes for the name
                   for i, name in enumerate(["Vrendahl", "Vrandhal", "Vrendhol", "Vrendhel"])]
    live.upsert([target, *near_misses])
    dense = search(live.index, encoder, ["Vrendhal"], 3).hits[0]
    hybrid = search(live.index, encoder, ["Vrendhal"], 1, mode="hybrid", store=live.store).hits[0]
    assert "tides" not in [h.id for h in dense]
    assert hybrid[0].id == "tides" and hybrid[0].lexical > 0
    live.close()


def test_hybrid_mining_ranks_by_fusion_and_never_returns_a_positive(tiny_dir: Path, encoder, tmp_path: Path) -> None:
    from retriever.search import rank_queries
    from training.negatives import MiningParams, mine_hard_negatives

    dataset = load_beir(tiny_dir)
    index, manifest, path = build_index(dataset, encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    split = dataset.splits[-1]
    qrels = dataset.qrels(split)
    queries = [dataset.queries[q] for q in qrels]
    ranking = rank_queries(path.parent, index, manifest, encoder, queries, 8, "hybrid")
    dense = rank_queries(path.parent, index, manifest, encoder, queries, 8, "dense")
    assert ranking.ids != dense.ids  # the lexical side changed some ranking
    mined = mine_hard_negatives(dataset, split, index, manifest, encoder, MiningParams(top_k=5), ranking=ranking)
    for qid, negatives in mined.negatives.items():
        positives = {d for d, r in qrels[qid].items() if r > 0}
        assert not positives & set(negatives)
        expected = [d for d in ranking.ids[list(qrels).index(qid)] if d not in positives and d != qid][:5]
        assert negatives == expected


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_allowed_ids_restrict_every_backend_inside_the_search(backend: str, tmp_path: Path) -> None:
    if backend == "milvus":
        pytest.importorskip("pymilvus")
    from retriever.pipeline import create_store

    rng = np.random.default_rng(3)
    docs = rng.standard_normal((200, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    store = create_store(16, "Flat", backend, tmp_path / "idx", use_gpu=False)
    ids = [f"d{i}" for i in range(200)]
    store.add(ids, docs, documents=[(d, "", f"text of {d}") for d in ids])
    allowed = {f"d{i}" for i in range(0, 200, 7)}
    subset = sorted(range(0, 200, 7))
    result = store.search(docs[:4], 5, allowed=allowed)
    for row, found in zip(docs[:4], result.ids, strict=True):
        assert found == [ids[subset[j]] for j in np.argsort(-(docs[subset] @ row))[:5]]
    np.testing.assert_allclose(store.vectors(["d3", "d9"]), docs[[3, 9]], atol=1e-6)
    assert np.isnan(store.vectors(["d3", "unknown"])[1]).all()
    assert store.search(docs[:1], 5, allowed=set()).ids == [[]]
