"""Candidate sets for filtering: each query's top-K retrieved documents, with cosines and labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retriever.data import BeirDataset
from retriever.encoders import BiEncoder
from retriever.index import VectorStore


@dataclass
class Candidates:
    """``cosines[i, j]`` is the j-th retrieved cosine of query i; ``labels`` marks qrels positives.

    ``n_relevant[i]`` counts all of query i's positives, retrieved or not; ``extra_*`` hold the positives
    that were not retrieved (used to train the adapter, not to measure filtering).
    """

    query_ids: list[str]
    query_vectors: np.ndarray
    cosines: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    n_relevant: np.ndarray
    extra_query_index: np.ndarray
    extra_cosines: np.ndarray

    @property
    def k(self) -> int:
        return self.cosines.shape[1]


def collect_candidates(
    index: VectorStore, encoder: BiEncoder, dataset: BeirDataset, split: str, k: int, ignore_identical_ids: bool = True
) -> Candidates:
    qrels = dataset.qrels(split)
    qids = [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]
    qvec = encoder.encode_queries([dataset.queries[q] for q in qids])
    k = min(k, len(index))
    result = index.search(qvec, k + 1 if ignore_identical_ids else k)
    cosines = np.full((len(qids), k), -1.0, dtype=np.float32)
    labels = np.zeros((len(qids), k), dtype=bool)
    valid = np.zeros((len(qids), k), dtype=bool)
    extra_q, extra_docs = [], []
    for i, (qid, ids, scores) in enumerate(zip(qids, result.ids, result.scores, strict=True)):
        keep = [j for j, d in enumerate(ids) if not (ignore_identical_ids and d == qid)][:k]
        relevant = {d for d, r in qrels[qid].items() if r > 0}
        kept_ids = [ids[j] for j in keep]
        cosines[i, : len(keep)] = scores[keep]
        labels[i, : len(keep)] = [d in relevant for d in kept_ids]
        valid[i, : len(keep)] = True
        missing = sorted(relevant - set(kept_ids))
        extra_q += [i] * len(missing)
        extra_docs += missing
    extra = encoder.encode_documents(dataset.doc_texts(extra_docs)) if extra_docs else np.zeros((0, qvec.shape[1]))
    extra_q_arr = np.array(extra_q, dtype=np.int64)
    extra_cos = np.einsum("ij,ij->i", qvec[extra_q_arr], extra).astype(np.float32) if extra_docs else \
        np.zeros(0, dtype=np.float32)
    n_relevant = np.array([sum(r > 0 for r in qrels[q].values()) for q in qids])
    return Candidates(qids, qvec, cosines, labels, valid, n_relevant, extra_q_arr, extra_cos)
