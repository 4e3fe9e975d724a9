"""ROC AUC as the MW-loss paper measures it (arXiv 2510.00137).

For every query: its labelled positives (scored directly, retrieved or not) plus its top-``n_neg``
retrieved non-positives. Pooling every query's pairs gives the global AUC, which rewards scores that
are comparable across queries; the mean per-query AUC only rewards ranking within a query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from retriever.types import Qrels, Run


@dataclass
class AucResult:
    auc_global: float
    auc_per_query: float
    labels: np.ndarray
    scores: np.ndarray


def auc_labels_scores(
    qrels: Qrels, run: Run, positive_scores: dict[str, dict[str, float]], n_neg: int = 500
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(labels, scores, query_index)`` for the pooled pairs of all judged queries."""
    labels, scores, groups = [], [], []
    for g, (qid, judged) in enumerate(qrels.items()):
        relevant = {d for d, rel in judged.items() if rel > 0}
        if not relevant:
            continue
        pos = [positive_scores[qid][d] for d in relevant]
        ranked = sorted(run.get(qid, {}).items(), key=lambda item: -item[1])
        neg = [s for d, s in ranked if d not in relevant][:n_neg]
        labels.append(np.r_[np.ones(len(pos)), np.zeros(len(neg))])
        scores.append(np.asarray(pos + neg, dtype=np.float64))
        groups.append(np.full(len(pos) + len(neg), g))
    return np.concatenate(labels), np.concatenate(scores), np.concatenate(groups)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (ties count half); NaN when one class is missing, where sklearn would raise."""
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def retrieval_auc(
    qrels: Qrels, run: Run, positive_scores: dict[str, dict[str, float]], n_neg: int = 500
) -> AucResult:
    labels, scores, groups = auc_labels_scores(qrels, run, positive_scores, n_neg)
    per_query = [roc_auc(labels[groups == g], scores[groups == g]) for g in np.unique(groups)]
    per_query = [a for a in per_query if not np.isnan(a)]
    return AucResult(
        auc_global=roc_auc(labels, scores),
        auc_per_query=float(np.mean(per_query)) if per_query else float("nan"),
        labels=labels,
        scores=scores,
    )
