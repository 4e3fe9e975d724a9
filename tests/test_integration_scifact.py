"""SciFact slice: 300 documents and the test queries whose positives are among them, end to end."""

import math

import numpy as np
import pytest
from conftest import SHARED_DATA, requires_shared_data

from retriever.data import BeirDataset, load_beir
from retriever.pipeline import build_index, evaluate_index, open_index, retrieve

pytestmark = [pytest.mark.integration, requires_shared_data("scifact")]


@pytest.fixture(scope="module")
def scifact_slice() -> BeirDataset:
    full = load_beir(SHARED_DATA / "scifact")
    test = full.qrels("test")
    positives: list[str] = []
    queries: dict[str, dict[str, int]] = {}
    for qid in sorted(test, key=int):
        docs = [d for d in test[qid] if d in full.corpus]
        if len(set(positives) | set(docs)) > 120:
            break
        positives = sorted(set(positives) | set(docs))
        queries[qid] = test[qid]
    fillers = [d for d in full.doc_ids if d not in positives][: 300 - len(positives)]
    corpus = {d: full.corpus[d] for d in positives + fillers}
    return BeirDataset("scifact-slice", full.path, corpus, full.queries, {"test": queries})


def independent_metrics(qrels, q_vectors, d_vectors, doc_ids):
    scores = q_vectors @ d_vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")
    ndcg, mrr, recall = [], [], []
    for row, qid in enumerate(qrels):
        ranked = [doc_ids[i] for i in order[row]]
        rel = qrels[qid]
        dcg = sum(rel.get(d, 0) / math.log2(r + 2) for r, d in enumerate(ranked[:10]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        ndcg.append(dcg / sum(g / math.log2(r + 2) for r, g in enumerate(ideal)))
        mrr.append(next((1 / (r + 1) for r, d in enumerate(ranked[:10]) if d in rel), 0.0))
        recall.append(len(set(ranked[:100]) & set(rel)) / len(rel))
    return {"ndcg@10": np.mean(ndcg), "mrr@10": np.mean(mrr), "recall@100": np.mean(recall)}


def test_build_search_evaluate_and_reload(scifact_slice, encoder, tmp_path) -> None:
    ds = scifact_slice
    assert len(ds.corpus) == 300 and len(ds.qrels("test")) >= 40
    index, manifest, path = build_index(ds, encoder, "slice", root=tmp_path)
    assert manifest.count == 300 and manifest.data_source.sha256 == ds.content_hash

    report = evaluate_index(index, encoder, ds, split="test", k=300)
    qrels = ds.qrels("test")
    q_vectors = encoder.encode_queries([ds.queries[q] for q in qrels])
    d_vectors = encoder.encode_documents(ds.doc_texts())
    expected = independent_metrics(qrels, q_vectors, d_vectors, ds.doc_ids)
    for name, value in expected.items():
        assert report.metrics[name] == pytest.approx(value, abs=1e-6), name
    assert report.metrics["ndcg@10"] > 0.6  # MiniLM is strong on this slice
    assert 0.5 < report.metrics["auc_per_query"] <= 1 and 0.5 < report.metrics["auc_global"] <= 1

    reloaded, _, _ = open_index(path.parent, encoder, use_gpu=False)
    queries = ds.split_queries("test")
    assert retrieve(reloaded, encoder, queries, k=20) == retrieve(index, encoder, queries, k=20)
