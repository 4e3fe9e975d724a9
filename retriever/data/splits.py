"""Deterministic held-out splits, for datasets such as SciFact that ship no dev qrels."""

from __future__ import annotations

import numpy as np

from retriever.types import Qrels


def held_out_split(qrels: Qrels, fraction: float = 0.1, seed: int = 42) -> tuple[Qrels, Qrels]:
    """Split qrels by query into ``(rest, held_out)``; the same seed always gives the same split."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    query_ids = sorted(qrels)
    n_held = max(1, round(len(query_ids) * fraction))
    order = np.random.default_rng(seed).permutation(len(query_ids))
    held = {query_ids[i] for i in order[:n_held]}
    rest = {qid: docs for qid, docs in qrels.items() if qid not in held}
    held_out = {qid: docs for qid, docs in qrels.items() if qid in held}
    return rest, held_out


def partition_queries(
    qrels: Qrels, fractions: tuple[float, float, float] = (0.5, 0.2, 0.3), seed: int = 42
) -> tuple[Qrels, Qrels, Qrels]:
    """Seeded (train, dev, test) partition by query, for data that ships a single judged split."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    query_ids = sorted(qrels)
    order = [query_ids[i] for i in np.random.default_rng(seed).permutation(len(query_ids))]
    n_train = round(len(order) * fractions[0])
    n_dev = round(len(order) * fractions[1])
    parts = (order[:n_train], order[n_train:n_train + n_dev], order[n_train + n_dev:])
    return tuple({q: qrels[q] for q in part} for part in parts)  # type: ignore[return-value]
