"""``calibrate``: fit a Cosine Adapter for an index, pick its global threshold, measure, save, plot."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve

from retriever.data import BeirDataset
from retriever.data.splits import partition_queries
from retriever.encoders import BiEncoder
from retriever.evaluate.plots import new_figure, save_png
from retriever.filtering.candidates import Candidates
from retriever.filtering.fit import UNRETRIEVED_WEIGHT, adapter_scores
from retriever.filtering.metrics import FilterMetrics, filter_metrics, pick_threshold, top_ratio_scores
from retriever.filtering.relevance import DEFAULT_MAPPING, fit_relevance_model
from retriever.filtering.store import save_with_adapter
from retriever.index import IndexManifest, VectorStore

logger = logging.getLogger(__name__)

METHODS = ("filter-raw-cosine", "filter-cosine-adapter", "filter-top-ratio")
ADAPTER_METHOD = "filter-cosine-adapter"  # the method whose threshold the index keeps


@dataclass
class CalibrationReport:
    k: int
    mapping: str
    target: dict
    threshold: float
    metrics: dict[str, FilterMetrics]
    splits: dict[str, int]
    notes: list[str] = field(default_factory=list)
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)
    hybrid: dict | None = None


def ensure_train_dev(dataset: BeirDataset, seed: int = 42) -> tuple[BeirDataset, list[str]]:
    """Data with a single judged split (the MS MARCO sample) is partitioned by query 50/20/30, seeded."""
    if "train" in dataset.splits:
        return dataset, []
    only = dataset.splits[-1]
    train, dev, test = partition_queries(dataset.qrels(only), seed=seed)
    derived = BeirDataset(dataset.name, dataset.path, dataset.corpus, dataset.queries,
                          {"train": train, "dev": dev, "test": test}, list(dataset.warnings))
    note = (f"{dataset.name} has only '{only}' qrels: its queries were split 50/20/30 into train/dev/test "
            f"(seed {seed}; {len(train)}/{len(dev)}/{len(test)} queries)")
    return derived, [note]


def method_scores(candidates: Candidates, adapter) -> dict[str, np.ndarray]:
    return {
        "filter-raw-cosine": candidates.cosines,
        "filter-cosine-adapter": adapter_scores(adapter, candidates),
        "filter-top-ratio": top_ratio_scores(candidates.cosines),
    }


def calibrate(
    index: VectorStore,
    manifest: IndexManifest,
    encoder: BiEncoder,
    dataset: BeirDataset,
    k: int = 100,
    target_recall: float | None = 0.95,
    target_precision: float | None = None,
    mapping: str = DEFAULT_MAPPING,
    seed: int = 42,
    save_to: Path | None = None,
    store=None,
    unretrieved_weight: float = UNRETRIEVED_WEIGHT,
) -> CalibrationReport:
    """Fit on train, choose every method's threshold on dev for the target, measure on test. ``mapping``
    ``auto`` fits every mapping and keeps the best on dev (PR-AUC). With ``store`` (an index's lexical side),
    also fit the calibrated fusion and tune the hybrid fusions (:func:`retriever.hybrid_fit.fit_hybrid_side`)."""
    dataset, notes = ensure_train_dev(dataset, seed)
    fitted = fit_relevance_model(index, encoder, dataset, k, mapping, seed, unretrieved_weight, target_recall,
                                 target_precision, extra_splits=("test",))
    split, adapter, model = fitted.candidates, fitted.model.adapter, fitted.model
    if fitted.dev_pr_auc:
        notes.append("mapping chosen on dev PR-AUC: " + ", ".join(f"{m} {v:.4f}" for m, v in fitted.dev_pr_auc.items()))
    dev = split["dev"]
    thresholds = {m: pick_threshold(s[dev.valid], dev.labels[dev.valid], target_recall, target_precision)
                  for m, s in method_scores(dev, adapter).items() if m != ADAPTER_METHOD}
    thresholds[ADAPTER_METHOD] = model.threshold
    evaluation = split.get("test", dev)
    if "test" not in split:
        notes.append("no test split: metrics are on dev, where the thresholds were chosen")
    metrics, curves = {}, {}
    for method, scores in method_scores(evaluation, adapter).items():
        metrics[method] = filter_metrics(scores, evaluation.labels, evaluation.valid, thresholds[method])
        curves[method] = (scores[evaluation.valid], evaluation.labels[evaluation.valid], thresholds[method])
    target = {"recall": target_recall} if target_precision is None else {"precision": target_precision}
    report = CalibrationReport(evaluation.k, fitted.mapping, target, model.threshold, metrics,
                               {s: len(c.query_ids) for s, c in split.items()}, notes, curves)
    model.info = {"threshold": report.threshold, "target": target, "k": evaluation.k, "dataset": dataset.name,
                  "fitted_on": "train", "threshold_on": "dev", "unretrieved_weight": unretrieved_weight,
                  "test_metrics": metrics[ADAPTER_METHOD].as_dict()}
    if store is not None and store.has_lexical:
        from retriever.hybrid_fit import fit_hybrid_side  # here: hybrid_fit imports retriever.filtering

        report.hybrid = fit_hybrid_side(index, store, encoder, dataset, model, target_recall=target_recall,
                                        target_precision=target_precision, seed=seed)
        model.info["hybrid"] = report.hybrid
    if save_to is not None:
        save_with_adapter(index, manifest, adapter, model.info, save_to)
    return report


def plot_calibration(report: CalibrationReport, path: Path, title: str) -> Path:
    """Precision-recall curves of the three methods, each with its chosen operating point."""
    fig, ax = new_figure((6, 5))
    for method, (scores, labels, threshold) in report.curves.items():
        precision, recall, _ = precision_recall_curve(labels, scores)
        name = method.removeprefix("filter-")
        line, = ax.plot(recall, precision, label=f"{name} (PR-AUC {report.metrics[method].pr_auc:.3f})")
        keep = scores >= threshold
        op_recall = (keep & labels).sum() / max(labels.sum(), 1)
        op_precision = (keep & labels).sum() / max(keep.sum(), 1)
        ax.plot([op_recall], [op_precision], "o", color=line.get_color(), markersize=7)
    ax.set(xlabel="recall", ylabel="precision", title=title, yscale="log")
    ax.axvline(report.target.get("recall", 0.95), color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=8, loc="upper right")
    return save_png(fig, path)
