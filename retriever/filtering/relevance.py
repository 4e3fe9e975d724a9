"""Fitting an index's calibrated relevance: the Cosine Adapter on train (the mapping chosen on dev when
``auto``) and its global threshold on dev. ``retriever calibrate`` and the benches' hybrid first stages both
fit through :func:`fit_relevance_model`, so they fit the same model."""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.metrics import average_precision_score

from retriever.data import BeirDataset
from retriever.encoders import BiEncoder
from retriever.filtering.adapter import MAPPINGS, CosineAdapter
from retriever.filtering.candidates import Candidates, collect_candidates
from retriever.filtering.fit import UNRETRIEVED_WEIGHT, adapter_scores, fit_adapter
from retriever.filtering.metrics import pick_threshold
from retriever.filtering.store import RelevanceModel
from retriever.index import VectorStore

DEFAULT_MAPPING = "auto"  # the best mapping differs by dataset on dev (SciFact linear, NFCorpus power): findings


@dataclass
class FittedRelevance:
    """The fitted model (adapter and dev threshold), its mapping, the candidates of every split it collected,
    and with ``auto`` each mapping's dev PR-AUC (empty otherwise)."""

    model: RelevanceModel
    mapping: str
    candidates: dict[str, Candidates]
    dev_pr_auc: dict[str, float]


def fit_relevance_model(
    index: VectorStore,
    encoder: BiEncoder,
    dataset: BeirDataset,
    k: int = 100,
    mapping: str = DEFAULT_MAPPING,
    seed: int = 42,
    unretrieved_weight: float = UNRETRIEVED_WEIGHT,
    target_recall: float | None = 0.95,
    target_precision: float | None = None,
    extra_splits: tuple[str, ...] = (),
) -> FittedRelevance:
    """Collect each query's top-``k`` candidates of train and dev (and of ``extra_splits`` the dataset has,
    for the caller to measure on), fit the adapter on train, and pick the highest threshold reaching
    ``target_recall`` on dev (or the lowest reaching ``target_precision``). The dataset needs train and dev
    qrels (:func:`retriever.filtering.calibrate.ensure_train_dev` derives them)."""
    wanted = ("train", "dev") + tuple(s for s in extra_splits if s in dataset.splits)
    candidates = {s: collect_candidates(index, encoder, dataset, s, k) for s in wanted}
    adapter, mapping, dev_pr_auc = _fit_mapping(candidates["train"], candidates["dev"], mapping, seed,
                                                unretrieved_weight)
    dev = candidates["dev"]
    threshold = pick_threshold(adapter_scores(adapter, dev)[dev.valid], dev.labels[dev.valid], target_recall,
                               target_precision)
    model = RelevanceModel(adapter, threshold, {"mapping": mapping})
    return FittedRelevance(model, mapping, candidates, dev_pr_auc)


def _fit_mapping(train: Candidates, dev: Candidates, mapping: str, seed: int,
                 unretrieved_weight: float) -> tuple[CosineAdapter, str, dict[str, float]]:
    """The adapter of ``mapping``, or with ``auto`` the mapping whose adapter has the best dev PR-AUC."""
    names = MAPPINGS if mapping == "auto" else (mapping,)
    fitted = {name: fit_adapter(train, dev, mapping=name, seed=seed, show_progress=True,
                                unretrieved_weight=unretrieved_weight) for name in names}
    if mapping != "auto":
        return fitted[mapping], mapping, {}
    scores = {name: float(average_precision_score(dev.labels[dev.valid], adapter_scores(a, dev)[dev.valid]))
              for name, a in fitted.items()}
    best = max(scores, key=scores.get)
    return fitted[best], best, scores
