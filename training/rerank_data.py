"""Reranker training groups: a query, one positive, mined hard negatives and random easy negatives."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from retriever.data import BeirDataset
from training.examples import sample_query_pairs

logger = logging.getLogger(__name__)

POSITIVE, HARD, EASY = 0, 1, 2


@dataclass
class RerankGroups:
    """``docs[g]`` is group ``g``'s documents, positive first; ``kinds`` marks each as POSITIVE/HARD/EASY."""

    query_ids: list[str]
    docs: list[list[str]]
    kinds: np.ndarray

    def __len__(self) -> int:
        return len(self.query_ids)

    @property
    def labels(self) -> np.ndarray:
        return (self.kinds == POSITIVE).astype(np.float32)


def build_groups(dataset: BeirDataset, split: str, negatives: dict[str, list[str]], n_hard: int, n_easy: int,
                 hard_pool: int = 30, max_groups: int | None = None, seed: int = 42, rows: str = "pair",
                 ) -> RerankGroups:
    """One group per labelled (query, positive) pair of ``split`` whose query has ``n_hard`` mined negatives
    (``rows="pair"``), or one per query with its positive drawn by grade (``"query"``, Tevatron's
    convention: a query with 1,000 positives no longer brings 1,000 groups).

    Hard negatives are sampled uniformly from the query's top ``hard_pool`` mined ones; easy ones uniformly
    from the corpus. Documents labelled relevant to the query (in ``split``'s qrels) are never negatives.
    """
    qrels = dataset.qrels(split)
    rng = np.random.default_rng(seed)
    pairs = sample_query_pairs(qrels, seed) if rows == "query" else \
        [(q, d) for q, docs in qrels.items() for d, rel in docs.items() if rel > 0]
    if max_groups is not None and len(pairs) > max_groups:
        pairs = [pairs[i] for i in np.sort(rng.choice(len(pairs), max_groups, replace=False))]
    doc_ids = np.array(dataset.doc_ids)
    query_ids, docs = [], []
    skipped = 0
    for q, positive in pairs:
        labelled = {d for d, rel in qrels[q].items() if rel > 0}
        pool = [d for d in negatives.get(q, [])[:hard_pool] if d not in labelled]
        if len(pool) < n_hard:
            skipped += 1
            continue
        hard = [pool[i] for i in rng.choice(len(pool), n_hard, replace=False)] if n_hard else []
        easy: list[str] = []
        while len(easy) < n_easy:
            draw = doc_ids[rng.integers(0, len(doc_ids), 2 * n_easy)]
            easy += [d for d in draw.tolist() if d not in labelled and d not in hard and d not in easy]
        query_ids.append(q)
        docs.append([positive, *hard, *easy[:n_easy]])
    if not docs:
        raise ValueError(f"no reranker training groups in split '{split}': are the negatives for this split?")
    if skipped:
        logger.info("skipped %d pairs whose query has fewer than %d mined negatives", skipped, n_hard)
    kinds = np.array([POSITIVE] + [HARD] * n_hard + [EASY] * n_easy)
    return RerankGroups(query_ids, docs, np.tile(kinds, (len(docs), 1)))


def weight_summary(weights: torch.Tensor, kinds: np.ndarray) -> dict[str, float]:
    """Mean gradient weight of the positives, hard and easy negatives of a step (what the plots show)."""
    w = weights.detach().float().cpu().numpy()
    out = {}
    for name, kind in (("weight_positive", POSITIVE), ("weight_hard", HARD), ("weight_easy", EASY)):
        mask = kinds == kind
        if mask.any():
            out[name] = float(w[mask].mean())
    return out
