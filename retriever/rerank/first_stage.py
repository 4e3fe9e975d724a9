"""First-stage lists for reranking, per split: a dense index's top-k, or a hybrid list built as
``retriever calibrate`` builds an index's hybrid side (Cosine Adapter and calibrated fusion fitted on
train, convex weights and the default fusion on dev) with a dense model whose document tower is the
index's own (e.g. ADORE's trained query tower over the zero-shot corpus vectors)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from retriever.data import BeirDataset
from retriever.docstore import DocumentStore
from retriever.encoders import BiEncoder
from retriever.errors import RetrieverError
from retriever.filtering import fit_relevance_model
from retriever.hybrid_fit import fit_hybrid_side, labelled_candidates, to_run
from retriever.index import resolve_index_dir
from retriever.pipeline import open_index, open_store, retrieve
from retriever.search import calibrated_relevance, fuse, fusion_params, require_store
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

    def check(self) -> None:
        """Refuse, before any training or encoding, an index that is missing or (hybrid) has no lexical side."""
        resolve_index_dir(self.index)
        if self.kind == "hybrid":
            lexical_store(self.index).close()


def lexical_store(folder: Path) -> DocumentStore:
    """The index's document store with its lexical side. An index without one is refused with the error and
    message the service answers 409 with (:class:`~retriever.lexical.NoLexicalSideError`); nothing is built
    into the index behind the caller's back."""
    store = open_store(folder)
    require_store(store, "hybrid", index_name=Path(folder).name)
    return store


def first_stage_runs(spec: FirstStageSpec, dataset: BeirDataset, query_ids: dict[str, list[str]],
                     depth: int = 100) -> tuple[dict[str, Run], dict]:
    """``{split: run}`` for the given query ids of each split, and what was fitted (hybrid: the side)."""
    store = lexical_store(spec.index) if spec.kind == "hybrid" else None  # refused before any encoding
    encoder = BiEncoder.load(spec.dense_model, show_progress=False) if spec.dense_model else None
    index, _, encoder = open_index(spec.index, encoder)  # refuses a model of another document tower
    if store is None:
        return {s: retrieve(index, encoder, {q: dataset.queries[q] for q in qids}, k=depth)
                for s, qids in query_ids.items()}, {}
    return _hybrid_runs(spec, index, store, encoder, dataset, query_ids)


def _hybrid_runs(spec: FirstStageSpec, index, store: DocumentStore, encoder, dataset: BeirDataset,
                 query_ids: dict[str, list[str]]) -> tuple[dict[str, Run], dict]:
    adapter = fit_relevance_model(index, encoder, dataset).model  # as ``retriever calibrate`` fits it
    side = fit_hybrid_side(index, store, encoder, dataset, adapter)
    params = fusion_params({"hybrid": side}, fusion=spec.fusion)
    runs = {}
    for split, qids in query_ids.items():
        lc = labelled_candidates(index, store, encoder, dataset, split, params.depth, only_judged_positive=False)
        relevance = calibrated_relevance(lc.candidates, lc.queries, lc.vectors, adapter, params.calibration)
        run = to_run(lc, fuse(lc.candidates, params.fusion, params.alpha, relevance))
        runs[split] = {q: run[q] for q in qids if q in run}
    return runs, side
