"""Score interpolation of a reranker with its first stage.

    final = a * z(reranker) + (1 - a) * z(first stage)

with ``z`` the per-query standardisation (mean 0, standard deviation 1 over the query's reranked
candidates), the weight ``a`` chosen on a dev split. This is the usual way to combine a cross-encoder
with the list it reranks when the two are complementary or the reranker is the weaker of the two
(e.g. the interpolation baselines of "Squeezing Water from a Stone: A Bag of Tricks for Further Improving
Cross-Encoder Effectiveness for Reranking", ECIR 2022, and of the monoBERT + BM25 reranking literature).
``a = 1`` is the pure rerank, ``a = 0`` the first stage's own order.
"""

from __future__ import annotations

import numpy as np

from retriever.evaluate import evaluate_run
from retriever.types import Qrels, Run

WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)


def zscore(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-row ``(s - mean) / std`` over the row's valid entries (population std); a constant row maps to
    0; invalid entries come back as 0."""
    scores = np.asarray(scores, dtype=np.float64)
    valid = np.ones(scores.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    filled = np.where(valid, scores, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / count
    centred = np.where(valid, scores - mean, 0.0)
    std = np.sqrt((centred ** 2).sum(axis=1, keepdims=True) / count)
    return np.where(std > 0, centred / np.where(std > 0, std, 1.0), 0.0)


def interpolate(reranker: np.ndarray, first_stage: np.ndarray, weight: float,
                valid: np.ndarray | None = None) -> np.ndarray:
    """``weight * z(reranker) + (1 - weight) * z(first_stage)`` of ``[n_queries, n_candidates]`` score
    matrices; ``-inf`` where ``valid`` is False (padding)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"interpolation weight must be in [0, 1], got {weight}")
    if np.shape(reranker) != np.shape(first_stage):
        raise ValueError("reranker and first-stage scores must have the same shape")
    mixed = weight * zscore(reranker, valid) + (1.0 - weight) * zscore(first_stage, valid)
    return mixed if valid is None else np.where(valid, mixed, -np.inf)


def _heads(first_stage: Run, depth: int) -> dict[str, list[str]]:
    return {q: sorted(hits, key=hits.__getitem__, reverse=True)[:depth] for q, hits in first_stage.items()}


def interpolate_runs(reranked: Run, first_stage: Run, weight: float, depth: int) -> Run:
    """Interpolate over each query's first-stage top ``depth`` (the candidates ``rerank_run`` scored, read
    from ``reranked``); candidates below ``depth`` keep their first-stage order beneath them, as in
    :func:`retriever.rerank.base.rerank_run`."""
    heads = _heads(first_stage, depth)
    width = max((len(h) for h in heads.values()), default=0)
    shape = (len(heads), width)
    rerank_m, first_m, valid = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    for i, (q, docs) in enumerate(heads.items()):
        rerank_m[i, : len(docs)] = [reranked[q][d] for d in docs]
        first_m[i, : len(docs)] = [first_stage[q][d] for d in docs]
        valid[i, : len(docs)] = True
    mixed = interpolate(rerank_m, first_m, weight, valid)
    out: Run = {}
    for i, (q, docs) in enumerate(heads.items()):
        head = {d: float(s) for d, s in zip(docs, mixed[i, : len(docs)], strict=True)}
        floor = min(head.values(), default=0.0)
        tail = [d for d in sorted(first_stage[q], key=first_stage[q].__getitem__, reverse=True) if d not in head]
        head.update({d: floor - 1.0 - j for j, d in enumerate(tail)})
        out[q] = head
    return out


def pick_weight(qrels: Qrels, reranked: Run, first_stage: Run, depth: int, metric: str = "ndcg@10",
                weights: np.ndarray = WEIGHTS) -> tuple[float, dict[float, float]]:
    """The weight with the best ``metric`` on ``qrels`` (a dev split: never tune it on test), the largest
    on ties (closest to the pure rerank), and the metric at every weight tried."""
    judged = {q: qrels[q] for q in first_stage if q in qrels}
    by_weight = {float(w): evaluate_run(judged, interpolate_runs(reranked, first_stage, float(w), depth),
                                        (metric,))[metric] for w in weights}
    best = max(by_weight.values())
    return max(w for w, v in by_weight.items() if v == best), by_weight
