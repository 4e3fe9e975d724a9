"""Evaluation: ranx metrics, the MW paper's AUC protocol, TREC run files and ROC plots."""

from retriever.evaluate.auc import AucResult, auc_labels_scores, retrieval_auc
from retriever.evaluate.metrics import (
    DEFAULT_METRICS,
    compare_runs,
    evaluate_run,
    read_trec_run,
    write_trec_run,
)
from retriever.evaluate.plots import plot_roc

__all__ = [
    "DEFAULT_METRICS",
    "AucResult",
    "auc_labels_scores",
    "compare_runs",
    "evaluate_run",
    "plot_roc",
    "read_trec_run",
    "retrieval_auc",
    "write_trec_run",
]
