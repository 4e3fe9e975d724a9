"""Training rows from BEIR qrels: one (query, positive[, negatives...]) row per labelled pair."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from retriever.data import BeirDataset
from training.losses.base import KnownPositives

logger = logging.getLogger(__name__)


@dataclass
class TrainingRows:
    """Texts for the trainer and the ids behind them (for known-positive masking)."""

    columns: dict[str, list]
    ids: list[tuple[str, list[str]]]
    known: KnownPositives

    def __len__(self) -> int:
        return len(self.ids)

    def to_dataset(self):
        return Dataset.from_dict(self.columns)


def build_rows(
    dataset: BeirDataset,
    split: str = "train",
    negatives: dict[str, list[str]] | None = None,
    n_negatives: int = 0,
    max_pairs: int | None = None,
    seed: int = 42,
    negative_sampling: str = "random",
) -> TrainingRows:
    """One row per (query, positive) pair of ``split``; ``negatives`` maps a query id to ranked negatives.

    ``max_pairs`` subsamples pairs uniformly with ``seed`` (for large training sets on a CPU). Each row
    takes ``n_negatives`` of its query's mined negatives: sampled uniformly (STAR's choice, default) or the
    top-ranked ones.
    """
    qrels = dataset.qrels(split)
    pairs = [(q, d) for q, docs in qrels.items() for d, rel in docs.items() if rel > 0]
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
        logger.info("subsampled %d of %d training pairs (seed %d)", max_pairs, len(pairs), seed)
        pairs = [pairs[i] for i in keep]
    return rows_from_pairs(dataset, split, pairs, negatives, n_negatives, seed, negative_sampling)


def sample_query_pairs(qrels: dict[str, dict[str, int]], seed: int) -> list[tuple[str, str]]:
    """One (query, positive) pair per query with a positive: the positive drawn with probability
    proportional to its grade (graded qrels such as NFCorpus' 1/2), seeded."""
    rng = np.random.default_rng(seed)
    pairs = []
    for q in sorted(qrels):
        docs = sorted((d, r) for d, r in qrels[q].items() if r > 0)
        if docs:
            grades = np.array([r for _, r in docs], dtype=np.float64)
            pairs.append((q, docs[int(rng.choice(len(docs), p=grades / grades.sum()))][0]))
    return pairs


def epoch_rows(dataset: BeirDataset, config, negatives: dict[str, list[str]] | None, epoch: int) -> TrainingRows:
    """The rows of one epoch: every labelled pair (``config.rows == "pair"``), or one row per training query
    with a positive sampled by grade, redrawn each epoch (``"query"``, Tevatron's convention)."""
    if config.rows == "pair":
        return build_rows(dataset, config.split, negatives, config.n_negatives, config.max_pairs, config.seed,
                          config.negative_sampling)
    pairs = sample_query_pairs(dataset.qrels(config.split), config.seed + epoch)
    return rows_from_pairs(dataset, config.split, pairs, negatives, config.n_negatives, config.seed + epoch,
                           config.negative_sampling)


def epoch_blocks(dataset: BeirDataset, config, negatives: dict[str, list[str]] | None,
                 epochs: int) -> tuple[TrainingRows, int]:
    """``epochs`` draws of :func:`epoch_rows` stacked in epoch order, and the rows of one draw (a block of
    :class:`training.epoch_blocks.EpochBlocksBatchSampler`)."""
    draws = [epoch_rows(dataset, config, negatives, e) for e in range(epochs)]
    block = len(draws[0])  # the same queries each epoch: only the sampled positive (and negatives) change
    ids = [row for draw in draws for row in draw.ids]
    columns = {name: [v for draw in draws for v in draw.columns[name]] for name in draws[0].columns}
    columns["label"] = list(range(len(ids)))
    return TrainingRows(columns, ids, KnownPositives(dataset.qrels(config.split), ids)), block


def rows_from_pairs(dataset: BeirDataset, split: str, pairs: list[tuple[str, str]],
                    negatives: dict[str, list[str]] | None, n_negatives: int, seed: int,
                    negative_sampling: str) -> TrainingRows:
    qrels = dataset.qrels(split)
    rng = np.random.default_rng(seed)
    ids: list[tuple[str, list[str]]] = []
    for q, d in pairs:
        negs: list[str] = []
        if n_negatives:
            pool = [n for n in (negatives or {}).get(q, []) if n not in qrels[q]]
            if len(pool) < n_negatives:
                continue  # no row with fewer negatives than the others: columns must align
            if negative_sampling == "random":
                negs = [pool[i] for i in np.sort(rng.choice(len(pool), n_negatives, replace=False))]
            else:
                negs = pool[:n_negatives]
        ids.append((q, [d, *negs]))
    if not ids:
        raise ValueError(f"no training rows in split '{split}'")
    columns: dict[str, list] = {"anchor": [dataset.queries[q] for q, _ in ids]}
    columns["positive"] = dataset.doc_texts([docs[0] for _, docs in ids])
    for j in range(n_negatives):
        columns[f"negative_{j + 1}"] = dataset.doc_texts([docs[1 + j] for _, docs in ids])
    columns["label"] = list(range(len(ids)))
    return TrainingRows(columns, ids, KnownPositives(qrels, ids))
