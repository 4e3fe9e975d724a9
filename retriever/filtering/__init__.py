"""Relevance filtering: the Cosine Adapter (Rossi et al., CIKM 2024), thresholds and filtering metrics."""

from retriever.filtering.adapter import MAPPINGS, CosineAdapter
from retriever.filtering.candidates import Candidates, collect_candidates
from retriever.filtering.fit import fit_adapter
from retriever.filtering.metrics import FilterMetrics, filter_metrics, pick_threshold, top_ratio_scores

__all__ = [
    "MAPPINGS",
    "Candidates",
    "CosineAdapter",
    "FilterMetrics",
    "collect_candidates",
    "filter_metrics",
    "fit_adapter",
    "pick_threshold",
    "top_ratio_scores",
]

from retriever.filtering.calibrate import CalibrationReport, calibrate, plot_calibration  # noqa: E402
from retriever.filtering.relevance import FittedRelevance, fit_relevance_model  # noqa: E402
from retriever.filtering.store import RelevanceModel, load_relevance_model  # noqa: E402

__all__ += ["CalibrationReport", "FittedRelevance", "RelevanceModel", "calibrate", "fit_relevance_model",
            "load_relevance_model", "plot_calibration"]
