"""Scoring without gradient during reranker training: eval-mode scores, batched scores, and the dev
nDCG@10 of the scorer reranking a first stage's top candidates."""

from __future__ import annotations

import numpy as np
import torch

from retriever.data import BeirDataset
from retriever.evaluate import evaluate_run
from retriever.pipeline import open_index, retrieve
from training.rerank_config import RerankerConfig


def eval_scores(scorer, queries: list[str], documents: list[str]) -> torch.Tensor:
    """Scores without dropout or gradient; the scorer goes back to training mode."""
    scorer.eval()
    with torch.no_grad():
        scores = scorer(queries, documents).scores.float()
    scorer.train()
    return scores


def score_batches(scorer, queries: list[str], documents: list[str], batch_size: int = 64) -> np.ndarray:
    """Scores without gradient, in batches (dev evaluation)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(queries), batch_size):
            out.append(scorer(queries[start:start + batch_size], documents[start:start + batch_size])
                       .scores.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class DevEvaluator:
    """nDCG@10 of the scorer reranking the top ``dev_depth`` of ``dev_index`` for the dev queries."""

    def __init__(self, dataset: BeirDataset, config: RerankerConfig) -> None:
        index, _, encoder = open_index(config.dev_index)
        self.qrels = dataset.qrels(config.dev_split)
        self.run = retrieve(index, encoder, {q: dataset.queries[q] for q in self.qrels}, k=config.dev_depth)
        self.pairs = [(q, d) for q, hits in self.run.items() for d in hits]
        self.queries = [dataset.queries[q] for q, _ in self.pairs]
        self.docs = dataset.doc_texts([d for _, d in self.pairs])

    def __call__(self, scorer) -> float:
        scorer.eval()
        scores = score_batches(scorer, self.queries, self.docs)
        scorer.train()
        run: dict[str, dict[str, float]] = {q: {} for q in self.run}
        for (q, d), s in zip(self.pairs, scores.tolist(), strict=True):
            run[q][d] = s
        return evaluate_run(self.qrels, run, ("ndcg@10",))["ndcg@10"]
