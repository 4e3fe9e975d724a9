"""What every reranker offers, and reranking a first-stage run with one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from retriever.types import Run

RERANKER_FILE = "reranker.json"


def read_settings(path: str | Path) -> dict:
    """What ``retriever train-reranker`` saved beside a reranker (``reranker.json``): its arch and
    max_length, and a causal LM's prompt and answers; ``{}`` for folders it did not write."""
    file = Path(path) / RERANKER_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


class Reranker(Protocol):
    """Scores (query, document) pairs; higher is more relevant. ``score_pairs`` is the one entry point
    that the CLI, the evaluation and the service all call."""

    name: str

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray: ...


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Index batches of similar length (longest first), so that padding is small; callers scatter the
    results back with the indices."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start: start + batch_size]


def rerank_run(reranker: Reranker, queries: dict[str, str], run: Run, doc_texts: dict[str, str],
               depth: int = 100) -> Run:
    """Re-score the top ``depth`` candidates of each query with ``reranker`` in one batched call.

    Every candidate of ``run`` is kept exactly once: the reranked ones first, by reranker score, then the
    rest in their first-stage order with scores below the lowest reranked one.
    """
    missing = [q for q in run if q not in queries]
    if missing:
        raise KeyError(f"run has queries without text: {missing[:3]}")
    heads = {q: sorted(hits, key=hits.__getitem__, reverse=True)[:depth] for q, hits in run.items()}
    pair_q = [q for q, docs in heads.items() for _ in docs]
    pair_d = [d for docs in heads.values() for d in docs]
    scores = reranker.score_pairs([queries[q] for q in pair_q], [doc_texts[d] for d in pair_d])
    reranked: Run = {q: {} for q in run}
    for q, d, s in zip(pair_q, pair_d, scores.tolist(), strict=True):
        reranked[q][d] = s
    for q, hits in run.items():
        head = reranked[q]
        floor = min(head.values(), default=0.0)
        tail = [d for d in sorted(hits, key=hits.__getitem__, reverse=True) if d not in head]
        head.update({d: floor - 1.0 - i for i, d in enumerate(tail)})
    return reranked
