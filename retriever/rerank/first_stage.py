"""First-stage lists for reranking, per split: a dense index's top-k, or a hybrid list built as
``retriever calibrate`` builds an index's hybrid side (Cosine Adapter and calibrated fusion fitted on
train, convex weights and the default fusion on dev) with a dense model whose document tower is the
index's own (e.g. ADORE's trained query tower over the zero-shot corpus vectors)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from retriever.data import BeirDataset
from retriever.docstore import COMPLETE, STORE_FILE, DocumentStore
from retriever.errors import RetrieverError
from retriever.types import Run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FirstStageSpec:
    """``dense:<index folder>`` or ``hybrid:<fusion>:<index folder>[:<dense model>]``."""

    kind: str
    index: Path
    fusion: str | None = None
    dense_model: str | None = None

    @classmethod
    def parse(cls, text: str) -> FirstStageSpec:
        kind, _, rest = text.partition(":")
        if kind == "dense" and rest:
            return cls("dense", Path(rest))
        if kind == "hybrid":
            fusion, _, tail = rest.partition(":")
            index, _, model = tail.partition(":")
            if fusion and index:
                return cls("hybrid", Path(index), fusion, model or None)
        raise RetrieverError(f"first stage '{text}': use dense:INDEX or hybrid:FUSION:INDEX[:DENSE_MODEL]")

    @property
    def label(self) -> str:
        if self.kind == "dense":
            return self.index.name
        dataset = self.index.name.removesuffix("-zero-shot")
        model = f"-{Path(self.dense_model).name.removeprefix(dataset + '-')}" if self.dense_model else ""
        return f"{dataset}-hybrid-{self.fusion}{model}"


def _lexical_store(folder: Path, dataset: BeirDataset) -> DocumentStore:
    """The index's document store with its FTS5 side, filled once if an older index lacks it."""
    store = DocumentStore(folder / STORE_FILE, lexical=True)
    if len(store) < len(dataset.corpus):
        store.upsert((d, doc["title"], doc["text"], dataset.doc_metadata.get(d)) for d, doc in dataset.corpus.items())
        store.set_meta(COMPLETE, "1")
    return store


def relevance_model(index, encoder, dataset: BeirDataset, k: int = 100, seed: int = 42):
    """The Cosine Adapter as ``retriever calibrate`` fits it by default (mapping chosen on dev)."""
    from retriever.filtering import collect_candidates, pick_threshold
    from retriever.filtering.calibrate import DEFAULT_MAPPING, _fit_mapping
    from retriever.filtering.fit import UNRETRIEVED_WEIGHT
    from retriever.filtering.store import RelevanceModel

    split = {s: collect_candidates(index, encoder, dataset, s, k) for s in ("train", "dev")}
    adapter, mapping, _ = _fit_mapping(split, DEFAULT_MAPPING, seed, UNRETRIEVED_WEIGHT)
    dev = split["dev"]
    model = RelevanceModel(adapter, 0.0, {"mapping": mapping})
    model.threshold = pick_threshold(model.relevance(dev.query_vectors, dev.cosines)[dev.valid], dev.labels[dev.valid])
    return model


def first_stage_runs(spec: FirstStageSpec, dataset: BeirDataset, query_ids: dict[str, list[str]],
                     depth: int = 100) -> tuple[dict[str, Run], dict]:
    """``{split: run}`` for the given query ids of each split, and what was fitted (hybrid: the side)."""
    from retriever.encoders import BiEncoder
    from retriever.pipeline import open_index, retrieve

    encoder = BiEncoder.load(spec.dense_model, show_progress=False) if spec.dense_model else None
    index, _, encoder = open_index(spec.index, encoder)  # refuses a model of another document tower
    if spec.kind == "dense":
        return {s: retrieve(index, encoder, {q: dataset.queries[q] for q in qids}, k=depth)
                for s, qids in query_ids.items()}, {}
    return _hybrid_runs(spec, index, encoder, dataset, query_ids)


def _hybrid_runs(spec: FirstStageSpec, index, encoder, dataset: BeirDataset,
                 query_ids: dict[str, list[str]]) -> tuple[dict[str, Run], dict]:
    from retriever.hybrid_fit import fit_hybrid_side, labelled_candidates, to_run
    from retriever.search import calibrated_relevance, fuse, fusion_params

    store = _lexical_store(spec.index, dataset)
    adapter = relevance_model(index, encoder, dataset)
    side = fit_hybrid_side(index, store, encoder, dataset, adapter)
    params = fusion_params({"hybrid": side}, fusion=spec.fusion)
    runs = {}
    for split, qids in query_ids.items():
        lc = labelled_candidates(index, store, encoder, dataset, split, params.depth, only_judged_positive=False)
        relevance = calibrated_relevance(lc.candidates, lc.queries, lc.vectors, adapter, params.calibration)
        run = to_run(lc, fuse(lc.candidates, params.fusion, params.alpha, relevance))
        runs[split] = {q: run[q] for q in qids if q in run}
    return runs, side
