"""Static hard-negative mining from a FAISS index (``retriever mine``), in the manner of
sentence-transformers' ``mine_hard_negatives``: a rank range, score margins, and top or random sampling."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from retriever.atomic import atomic_write_text
from retriever.data import BeirDataset
from retriever.encoders import BiEncoder
from retriever.errors import DataError
from retriever.index import IndexManifest, VectorStore
from retriever.pipeline import positive_scores
from retriever.search import rank_queries

logger = logging.getLogger(__name__)


@dataclass
class MiningParams:
    top_k: int = 200
    skip_top: int = 0
    max_score: float | None = None
    relative_margin: float | None = None
    sampling: str = "top"
    n_keep: int | None = None
    seed: int = 42
    margin_reference: str = "lowest"  # relative_margin x the query's lowest | highest positive score


MARGIN_REFERENCES = {"lowest": min, "highest": max}


@dataclass
class NegativesFile:
    """Ranked negatives per query, with the mining model's fingerprint so a reader knows where they came from."""

    dataset: str
    split: str
    model_id: str
    model_fingerprint: str
    index_version: str | None
    params: dict
    negatives: dict[str, list[str]] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        atomic_write_text(Path(path), json.dumps(asdict(self)))
        return Path(path)


def read_negatives(path: Path) -> NegativesFile:
    try:
        raw = json.loads(Path(path).read_text())
        return NegativesFile(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"cannot read hard negatives from {path}: {str(exc).splitlines()[0][:160]}") from None


def mine_hard_negatives(
    dataset: BeirDataset,
    split: str,
    index: VectorStore,
    manifest: IndexManifest,
    encoder: BiEncoder,
    params: MiningParams | None = None,
    ranking=None,
) -> NegativesFile:
    """Top-``top_k`` per query from the index, labelled positives (of any split) removed, then:
    ranks below ``skip_top`` dropped (likely false negatives), scores above ``max_score`` or above
    ``relative_margin`` x the query's lowest (``margin_reference="highest"``: highest) positive score dropped,
    and ``n_keep`` kept by rank ("top") or sampled uniformly ("random"). With many positives per query, the
    lowest one can sit below every top-200 negative (NFCorpus: 90% of the train queries keep none at 0.95);
    "highest" drops only what outscores the best positive."""
    params = params or MiningParams()
    if params.sampling not in ("top", "random"):
        raise DataError(f"sampling must be 'top' or 'random', got '{params.sampling}'")
    if params.margin_reference not in MARGIN_REFERENCES:
        raise DataError(f"margin_reference must be one of {', '.join(MARGIN_REFERENCES)}, "
                        f"got '{params.margin_reference}'")
    qrels = dataset.qrels(split)
    every_positive: dict[str, set[str]] = {}
    for name in dataset.file_qrels:
        for qid, docs in dataset.file_qrels[name].items():
            every_positive.setdefault(qid, set()).update(d for d, rel in docs.items() if rel > 0)
    qids = list(qrels)
    # ``ranking``: a precomputed ranking of ``list(qrels)`` (e.g. hybrid, from retriever.search.rank_queries);
    # with one, the queries are encoded only for the relative margin
    needs_vectors = ranking is None or params.relative_margin is not None
    qvec = encoder.encode_queries([dataset.queries[q] for q in qids]) if needs_vectors else None
    result = ranking if ranking is not None else index.search(qvec, params.top_k + params.skip_top + 50)
    positive_floor = (_positive_reference(dataset, encoder, qids, qrels, params.margin_reference)
                      if params.relative_margin else {})
    rng = np.random.default_rng(params.seed)
    negatives: dict[str, list[str]] = {}
    for qid, ids, scores in zip(qids, result.ids, result.scores, strict=True):
        labelled = every_positive.get(qid, set())
        ranked = [(d, s) for d, s in zip(ids, scores, strict=True) if d not in labelled and d != qid]
        ranked = ranked[params.skip_top: params.skip_top + params.top_k]
        if params.max_score is not None:
            ranked = [(d, s) for d, s in ranked if s <= params.max_score]
        if params.relative_margin is not None:
            ranked = [(d, s) for d, s in ranked if s <= params.relative_margin * positive_floor[qid]]
        chosen = [d for d, _ in ranked]
        if params.n_keep is not None and len(chosen) > params.n_keep:
            if params.sampling == "random":
                keep = np.sort(rng.choice(len(chosen), params.n_keep, replace=False))
                chosen = [chosen[i] for i in keep]
            else:
                chosen = chosen[: params.n_keep]
        negatives[qid] = chosen
    logger.info("mined %d negatives for %d queries", sum(map(len, negatives.values())), len(negatives))
    return NegativesFile(dataset.name, split, encoder.document.model_id, encoder.document.fingerprint,
                         manifest.version, asdict(params), negatives)


def mine_from_index(dataset: BeirDataset, split: str, index_name, index: VectorStore, manifest: IndexManifest,
                    encoder: BiEncoder, params: MiningParams | None = None, mode: str = "dense",
                    fusion: str | None = None) -> NegativesFile:
    """:func:`mine_hard_negatives` over the index's ranking in ``mode``: ``dense`` (its vectors), ``hybrid``
    (its lexical side fused in, with the index's fusion unless ``fusion``) or ``lexical``. The file's
    params record the mode (and fusion)."""
    params = params or MiningParams()
    ranking = None
    if mode != "dense":
        if params.max_score is not None or params.relative_margin is not None:
            raise DataError("max_score and relative_margin are cosine margins: mine with mode 'dense'")
        queries = [dataset.queries[q] for q in dataset.qrels(split)]
        ranking = rank_queries(index_name, index, manifest, encoder, queries, params.top_k + params.skip_top + 50,
                               mode, fusion)
    mined = mine_hard_negatives(dataset, split, index, manifest, encoder, params, ranking=ranking)
    mined.params["mode"] = mode
    if fusion is not None:
        mined.params["fusion"] = fusion
    return mined


def _positive_reference(dataset, encoder, qids, qrels, reference: str) -> dict[str, float]:
    """Each query's lowest (or highest) positive score, for the relative margin."""
    scores = positive_scores(dataset, encoder, {q: qrels[q] for q in qids})
    pick = MARGIN_REFERENCES[reference]
    return {q: pick(scores[q].values()) for q in qids if q in scores}
