"""A reranker wrapper that scores each distinct (query, document) pair once: several first-stage lists
of the same queries (dense, hybrid) share most of their candidates, and a bench reranking both, or
tuning on dev and then reporting on test, should not pay twice."""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm


class CachingReranker:
    """``score_pairs`` of ``reranker``, remembered per (query text, document text); new pairs are scored in
    chunks of ``chunk`` under a progress bar. ``seconds`` / ``pairs_scored``: the cost of the new ones."""

    def __init__(self, reranker, chunk: int = 512) -> None:
        self.reranker = reranker
        self.name = getattr(reranker, "name", type(reranker).__name__)
        self.chunk = chunk
        self.cache: dict[tuple[str, str], float] = {}
        self.seconds = 0.0
        self.pairs_scored = 0

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        if len(queries) != len(documents):
            raise ValueError("queries and documents must have the same length")
        keys = list(zip(queries, documents, strict=True))
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        start = time.perf_counter()
        for begin in tqdm(range(0, len(missing), self.chunk), desc=f"rerank {len(missing)} pairs",
                          disable=len(missing) <= self.chunk):
            part = missing[begin: begin + self.chunk]
            scores = self.reranker.score_pairs([q for q, _ in part], [d for _, d in part])
            self.cache.update(zip(part, np.asarray(scores, dtype=np.float64).tolist(), strict=True))
        self.seconds += time.perf_counter() - start
        self.pairs_scored += len(missing)
        return np.array([self.cache[k] for k in keys], dtype=np.float32)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs_scored / self.seconds if self.seconds > 0 else 0.0
