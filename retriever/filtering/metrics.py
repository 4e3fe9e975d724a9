"""Filtering metrics over pooled top-K candidates, and the global threshold search."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score


@dataclass
class FilterMetrics:
    pr_auc: float
    p_at_r95: float
    filtered_at_r95: float
    threshold: float | None = None
    results_per_query: float | None = None
    recall_at_threshold: float | None = None
    precision_at_threshold: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def top_ratio_scores(cosines: np.ndarray) -> np.ndarray:
    """The per-query baseline's score: cosine over the query's top cosine (keep if >= alpha)."""
    top = np.maximum(cosines[:, :1], 1e-6)
    return cosines / top


def _sorted_curve(scores: np.ndarray, labels: np.ndarray):
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.int64)
    tp = np.cumsum(y)
    kept = np.arange(1, len(y) + 1)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold keeps every tied score
    return s[last_of_tie], tp[last_of_tie], kept[last_of_tie]


def pick_threshold(scores: np.ndarray, labels: np.ndarray, target_recall: float | None = 0.95,
                   target_precision: float | None = None) -> float:
    """One global threshold: the highest reaching ``target_recall``, or the lowest reaching
    ``target_precision`` (that keeps the most). Scores are pooled over all queries' candidates."""
    scores, labels = np.asarray(scores).ravel(), np.asarray(labels).ravel()
    thresholds, tp, kept = _sorted_curve(scores, labels)
    total = max(int(labels.sum()), 1)
    if target_precision is not None:
        ok = np.flatnonzero(tp / kept >= target_precision)
        return float(thresholds[ok[-1]]) if ok.size else float(thresholds[0])
    ok = np.flatnonzero(tp / total >= target_recall)
    return float(thresholds[ok[0]]) if ok.size else float(thresholds[-1])


def filter_metrics(scores: np.ndarray, labels: np.ndarray, valid: np.ndarray,
                   threshold: float | None = None, recall_target: float = 0.95) -> FilterMetrics:
    """PR-AUC, precision at recall 0.95, the fraction filtered there, and (given a threshold fitted
    elsewhere) results per query and the recall and precision it actually reaches."""
    s, y = scores[valid], labels[valid]
    thresholds, tp, kept = _sorted_curve(s, y)
    total = max(int(y.sum()), 1)
    first = np.flatnonzero(tp / total >= recall_target)[0]
    metrics = FilterMetrics(
        pr_auc=float(average_precision_score(y, s)) if y.any() else float("nan"),
        p_at_r95=float(tp[first] / kept[first]),
        filtered_at_r95=float(1 - kept[first] / len(s)),
    )
    if threshold is not None:
        keep = (scores >= threshold) & valid
        metrics.threshold = float(threshold)
        metrics.results_per_query = float(keep.sum(axis=1).mean())
        metrics.recall_at_threshold = float((keep & labels).sum() / total)
        metrics.precision_at_threshold = float((keep & labels).sum() / max(int(keep.sum()), 1))
    return metrics
