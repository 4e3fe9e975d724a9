"""Fit an index's hybrid side on labelled queries: the calibrated fusion (train), its threshold, the convex
weight and the default fusion (dev nDCG@10)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from retriever.data import BeirDataset
from retriever.evaluate import evaluate_run
from retriever.filtering.metrics import pick_threshold
from retriever.fusion import Candidates
from retriever.hybrid_calibration import features, fit_hybrid
from retriever.hybrid_milvus import search_sides
from retriever.lexical import query_terms
from retriever.search import calibrated_relevance, fuse, hybrid_candidates
from retriever.timing import StageTimer
from retriever.types import Run

logger = logging.getLogger(__name__)
ALPHAS = np.round(np.linspace(0.0, 1.0, 21), 2)


@dataclass
class LabelledCandidates:
    query_ids: list[str]
    queries: list[str]
    vectors: np.ndarray
    candidates: Candidates
    labels: np.ndarray  # [n, m] qrels-positive


def labelled_candidates(index, store, encoder, dataset: BeirDataset, split: str, depth: int,
                        only_judged_positive: bool = True) -> LabelledCandidates:
    """Hybrid candidates of the split's queries (with at least one positive), the query's own id dropped."""
    qrels = dataset.qrels(split)
    qids = [q for q, docs in qrels.items() if not only_judged_positive or any(r > 0 for r in docs.values())]
    texts = [dataset.queries[q] for q in qids]
    vectors = encoder.encode_queries(texts)
    dense_index, lexical, _ = search_sides(index, store, None, StageTimer())  # fit on the BM25 it serves
    c = hybrid_candidates(dense_index, lexical, texts, vectors, depth)
    labels = np.zeros(c.pad.shape, dtype=bool)
    for i, qid in enumerate(qids):
        positives = {d for d, r in qrels[qid].items() if r > 0}
        for j, doc in enumerate(c.ids[i]):
            labels[i, j] = doc in positives
            if doc == qid:
                c.pad[i, j] = True
    return LabelledCandidates(qids, texts, vectors, c, labels)


def to_run(lc: LabelledCandidates, scores: np.ndarray, k: int = 1000) -> Run:
    scores = np.where(lc.candidates.pad, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {q: {lc.candidates.ids[i][j]: float(scores[i, j]) for j in row if np.isfinite(scores[i, j])}
            for i, (q, row) in enumerate(zip(lc.query_ids, order, strict=True))}


def fit_calibration(train: LabelledCandidates, relevance_model, seed: int = 42):
    """Calibrated fusion fitted on every valid training candidate (positives the first stage missed are
    not candidates, so they are not in the fit)."""
    c = train.candidates
    cosines = np.where(np.isnan(c.dense), -1.0, c.dense).astype(np.float32)
    p_dense = relevance_model.relevance(train.vectors, cosines)
    n_terms = np.array([len(query_terms(q)) for q in train.queries])
    x = features(p_dense, c.lexical, n_terms)
    valid = ~c.pad
    return fit_hybrid(x[valid], train.labels[valid].astype(float), seed=seed)


def dev_ndcg(dev: LabelledCandidates, qrels, scores: np.ndarray) -> float:
    return float(evaluate_run({q: qrels[q] for q in dev.query_ids}, to_run(dev, scores, 100), ("ndcg@10",))
                 ["ndcg@10"])


def fit_hybrid_side(index, store, encoder, dataset: BeirDataset, relevance_model, depth: int = 100,
                    target_recall: float | None = 0.95, target_precision: float | None = None,
                    seed: int = 42) -> dict:
    """Everything ``retriever calibrate`` stores under the adapter's ``hybrid`` entry."""
    train = labelled_candidates(index, store, encoder, dataset, "train", depth)
    dev = labelled_candidates(index, store, encoder, dataset, "dev", depth)
    calibration = fit_calibration(train, relevance_model, seed)
    dev_relevance = calibrated_relevance(dev.candidates, dev.queries, dev.vectors, relevance_model, calibration)
    valid = ~dev.candidates.pad
    calibration.threshold = pick_threshold(dev_relevance[valid], dev.labels[valid], target_recall, target_precision)
    qrels = dataset.qrels("dev")
    scores = {"rrf": dev_ndcg(dev, qrels, fuse(dev.candidates, "rrf")),
              "calibrated": dev_ndcg(dev, qrels, dev_relevance)}
    alphas = {}
    for fusion in ("convex", "tmm"):
        by_alpha = {float(a): dev_ndcg(dev, qrels, fuse(dev.candidates, fusion, float(a))) for a in ALPHAS}
        alphas[fusion] = max(by_alpha, key=by_alpha.get)
        scores[fusion] = by_alpha[alphas[fusion]]
    best = max(scores, key=scores.get)
    logger.info("hybrid on dev (nDCG@10): %s; alpha %s; default fusion %s",
                {k: round(v, 4) for k, v in scores.items()}, alphas, best)
    return {"calibration": calibration.to_dict(), "alpha": alphas["convex"], "alpha_tmm": alphas["tmm"],
            "fusion": best, "depth": depth, "dev_ndcg@10": scores, "fitted_on": "train", "tuned_on": "dev"}
