"""One search function for the CLI, eval, mining, the benchmarks and the service.

``mode``: ``dense`` (vectors), ``lexical`` (FTS5 BM25 of the document store) or ``hybrid`` (both, fused).
In hybrid mode each candidate of either side gets both scores (its cosine from the stored vector, its BM25
from the lexical index restricted to the candidates), so fusion never guesses a missing score. ``where``
restricts both sides inside their searches. Every stage is timed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retriever import fusion as fusion_fns
from retriever.docstore import no_lexical_message
from retriever.errors import NotCalibratedError, RetrieverError
from retriever.hybrid_calibration import HybridCalibration
from retriever.hybrid_milvus import native_rrf, search_sides
from retriever.index.faiss_index import SearchResult
from retriever.lexical import NoLexicalSideError, query_terms
from retriever.timing import StageTimer
from retriever.where import Where

MODES = ("dense", "lexical", "hybrid")
DEFAULT_FUSION = "convex"
DEFAULT_ALPHA = 0.45  # dense weight of the convex fusion without one tuned on dev (SciFact and NFCorpus dev: 0.45)
HYBRID_DEPTH = 100  # candidates per side before fusion


@dataclass
class Hit:
    id: str
    score: float
    relevance: float | None = None
    dense: float | None = None  # cosine (hybrid: of every candidate)
    lexical: float | None = None  # BM25


@dataclass
class SearchOutcome:
    """Hits per query. ``calibrated``: hits carry a relevance probability (the dense Cosine Adapter's, or in
    hybrid mode the calibrated fusion's); ``threshold``: that relevance's global threshold."""

    hits: list[list[Hit]]
    calibrated: bool
    threshold: float | None
    mode: str = "dense"
    fusion: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class FusionParams:
    fusion: str = DEFAULT_FUSION
    alpha: float = DEFAULT_ALPHA
    depth: int = HYBRID_DEPTH
    calibration: HybridCalibration | None = None


def check_mode(mode: str, fusion: str | None = None) -> None:
    if mode not in MODES:
        raise RetrieverError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
    if fusion is not None and fusion not in fusion_fns.FUSIONS:
        raise RetrieverError(f"unknown fusion '{fusion}' (choose from {', '.join(fusion_fns.FUSIONS)})")


def require_store(store, mode: str, where: Where | None = None, index_name: str | None = None) -> None:
    """Refuse, before any work, a mode or filter the index cannot serve: lexical and hybrid need the FTS
    side (:class:`NoLexicalSideError`), ``where`` needs the document store."""
    if mode != "dense" and (store is None or not store.has_lexical):
        name = index_name or (store.path.parent.name if store is not None else "?")
        raise NoLexicalSideError(no_lexical_message(name, mode))
    if where and store is None:
        raise RetrieverError("where filters need the index's document store: rebuild it without --no-lexical")


def search(index, encoder, queries: list[str], k: int, *, mode: str = "dense", store=None, relevance_model=None,
           params: FusionParams | None = None, min_relevance: float | None = None, where: Where | None = None,
           query_vectors: np.ndarray | None = None, lexical_passes: list | None = None) -> SearchOutcome:
    """Top-``k`` per query. ``store``: the index's :class:`~retriever.docstore.DocumentStore` (needed for
    lexical and hybrid modes and for ``where``). ``min_relevance`` drops hits below it when they carry one.
    ``lexical_passes``: hybrid mode's FTS pass of each query, already run (``store.lexical_pass``)."""
    params = params or FusionParams()
    check_mode(mode, params.fusion if mode == "hybrid" else None)
    require_store(store, mode, where)
    if mode == "hybrid" and params.fusion == "calibrated" and (params.calibration is None or relevance_model is None):
        raise NotCalibratedError("calibrated fusion needs a calibrated index: run 'retriever calibrate' first")
    timer = StageTimer()
    dense_index, lexical, allowed = search_sides(index, store, where, timer)
    if mode == "lexical":
        with timer.stage("lexical"):
            rows = lexical.lexical_search(queries, k, where)
        hits = [[Hit(d, s, lexical=s) for d, s in row] for row in rows]
        return SearchOutcome(hits, False, None, mode, None, timer.ms)
    with timer.stage("encode"):
        vectors = encoder.encode_queries(queries) if query_vectors is None else query_vectors
    if mode == "dense":
        return _dense(dense_index, vectors, k, relevance_model, min_relevance, allowed, timer)
    if native_rrf(index, params.fusion, params.calibration is not None and relevance_model is not None):
        with timer.stage("hybrid_search"):
            rows = index.hybrid_rrf(queries, vectors, k, max(params.depth, k), lexical.expr)
        return SearchOutcome([[Hit(d, v) for d, v in row] for row in rows], False, None, "hybrid", "rrf", timer.ms)
    return _hybrid(dense_index, lexical, queries, vectors, k, relevance_model, params, min_relevance, where, allowed,
                   timer, lexical_passes)  # Milvus' lexical side ignores ``where`` and FTS passes: it has its expr


def _dense(index, vectors, k, relevance_model, min_relevance, allowed, timer) -> SearchOutcome:
    with timer.stage("dense"):
        result = index.search(vectors, k, allowed=allowed) if allowed is not None else index.search(vectors, k)
    width = max((len(s) for s in result.scores), default=0)
    cosines = np.full((len(vectors), width), -1.0, dtype=np.float32)
    for row, scores in enumerate(result.scores):
        cosines[row, : len(scores)] = scores
    relevance = None
    if relevance_model is not None and width:
        with timer.stage("calibrate"):
            relevance = relevance_model.relevance(vectors, cosines)
    hits = []
    for row, (ids, scores) in enumerate(zip(result.ids, result.scores, strict=True)):
        rel = relevance[row, : len(ids)] if relevance is not None else [None] * len(ids)
        row_hits = [Hit(d, float(s), None if r is None else float(r), dense=float(s))
                    for d, s, r in zip(ids, scores, rel, strict=True)]
        if relevance is not None and min_relevance is not None:
            row_hits = [h for h in row_hits if h.relevance >= min_relevance]
        hits.append(row_hits)
    return SearchOutcome(hits, relevance_model is not None,
                         relevance_model.threshold if relevance_model is not None else None, "dense", None, timer.ms)


def hybrid_candidates(index, store, queries: list[str], vectors: np.ndarray, depth: int, where: Where | None = None,
                      allowed: set[str] | None = None, timer: StageTimer | None = None,
                      lexical_passes: list | None = None) -> fusion_fns.Candidates:
    """Both sides' top-``depth``, united, with every candidate's cosine and BM25 filled in."""
    timer = timer or StageTimer()
    with timer.stage("dense"):
        result = index.search(vectors, depth, allowed=allowed) if allowed is not None else index.search(vectors, depth)
    dense = [list(zip(ids, map(float, scores), strict=True)) for ids, scores in zip(result.ids, result.scores,
                                                                                   strict=True)]
    with timer.stage("lexical"):  # one FTS pass per query: the lexical top-depth and the dense hits' BM25
        done = lexical_passes or [None] * len(queries)
        passes = [store.lexical_candidates(q, depth, [d for d, _ in hits], where, pass_)
                  for q, hits, pass_ in zip(queries, dense, done, strict=True)]
    candidates = fusion_fns.Candidates.from_hits(dense, [top for top, _ in passes])
    with timer.stage("complete"):
        _complete(index, vectors, candidates, [scores for _, scores in passes])
    return candidates


def _complete(index, vectors, c: fusion_fns.Candidates, dense_bm25: list[dict[str, float]]) -> None:
    """Fill each candidate's missing cosine (from its stored vector) and missing BM25 (0: no term matches)."""
    for i, bm25 in enumerate(dense_bm25):
        n = len(c.ids[i])
        need_dense = np.flatnonzero(np.isnan(c.dense[i, :n]))  # vectorised: no numpy scalar per candidate
        if need_dense.size:
            stored = index.vectors([c.ids[i][j] for j in need_dense])
            if stored is not None:
                c.dense[i, need_dense] = stored @ vectors[i]
        need_lexical = np.flatnonzero(np.isnan(c.lexical[i, :n]))
        c.lexical[i, need_lexical] = [bm25.get(c.ids[i][j], 0.0) for j in need_lexical]


def calibrated_relevance(c: fusion_fns.Candidates, queries: list[str], vectors: np.ndarray, relevance_model,
                         calibration: HybridCalibration) -> np.ndarray:
    """The calibrated fusion's relevance of every candidate, ``[n, m]``."""
    cosines = np.where(np.isnan(c.dense), -1.0, c.dense).astype(np.float32)
    p_dense = relevance_model.relevance(vectors, cosines) if cosines.size else cosines
    n_terms = np.array([len(query_terms(q)) for q in queries])
    return calibration.relevance(p_dense, c.lexical, n_terms)


def fuse(c: fusion_fns.Candidates, fusion: str, alpha: float = DEFAULT_ALPHA,
         relevance: np.ndarray | None = None) -> np.ndarray:
    """Fused scores ``[n, m]``. RRF ranks each side's own retrieved list (a side that did not retrieve a
    candidate adds nothing); the score fusions use the completed scores."""
    if c.dense.shape[1] == 0:  # nothing matched (a filter, or no candidates): nothing to fuse
        return np.zeros(c.dense.shape)
    if fusion == "rrf":
        return fusion_fns.rrf(np.where(c.in_dense, c.dense, np.nan), np.where(c.in_lexical, c.lexical, np.nan))
    if fusion in ("convex", "tmm"):
        return fusion_fns.convex(c.dense, c.lexical, alpha, theoretical=fusion == "tmm")
    if fusion == "calibrated":
        if relevance is None:
            raise RetrieverError("calibrated fusion needs the calibrated relevance")
        return relevance
    raise RetrieverError(f"unknown fusion '{fusion}'")


def _hybrid(index, store, queries, vectors, k, relevance_model, params: FusionParams, min_relevance, where, allowed,
            timer, lexical_passes=None) -> SearchOutcome:
    c = hybrid_candidates(index, store, queries, vectors, max(params.depth, k), where, allowed, timer, lexical_passes)
    relevance = None
    if params.calibration is not None and relevance_model is not None and c.dense.size:
        with timer.stage("calibrate"):
            relevance = calibrated_relevance(c, queries, vectors, relevance_model, params.calibration)
    with timer.stage("fuse"):
        fused = fuse(c, params.fusion, params.alpha, relevance)
        order = np.argsort(-np.where(c.pad, -np.inf, fused), axis=1, kind="stable")[:, :k]
    hits = []
    for i, row in enumerate(order):
        row_hits = [Hit(c.ids[i][j], float(fused[i, j]), None if relevance is None else float(relevance[i, j]),
                        float(c.dense[i, j]), float(c.lexical[i, j])) for j in row if not c.pad[i, j]]
        if relevance is not None and min_relevance is not None:
            row_hits = [h for h in row_hits if h.relevance >= min_relevance]
        hits.append(row_hits)
    threshold = params.calibration.threshold if relevance is not None else None
    return SearchOutcome(hits, relevance is not None, threshold, "hybrid", params.fusion, timer.ms)


def fusion_params(adapter_info: dict | None, fusion: str | None = None, alpha: float | None = None,
                  depth: int | None = None) -> FusionParams:
    """The index's fusion settings (from ``retriever calibrate``: the calibrated fusion, the convex weight
    tuned on dev and the fusion that won on dev), overridden by explicit arguments."""
    hybrid = (adapter_info or {}).get("hybrid") or {}
    calibration = HybridCalibration.from_dict(hybrid["calibration"]) if hybrid.get("calibration") else None
    chosen = fusion or hybrid.get("fusion") or DEFAULT_FUSION
    check_mode("hybrid", chosen)
    tuned = hybrid.get("alpha_tmm" if chosen == "tmm" else "alpha", DEFAULT_ALPHA)
    return FusionParams(chosen, float(alpha if alpha is not None else tuned),
                        depth or int(hybrid.get("depth", HYBRID_DEPTH)), calibration)


def rank_queries(index_name, index, manifest, encoder, queries: list[str], k: int, mode: str,
                 fusion: str | None = None):
    """Top-``k`` of each query as a :class:`~retriever.index.faiss_index.SearchResult` (ids and scores,
    best first), in any mode, with the index's own store and fusion settings: what mining consumes."""
    from retriever.filtering import load_relevance_model  # import cycle: filtering.calibrate imports search
    from retriever.pipeline import open_store  # import cycle: pipeline imports search

    relevance = load_relevance_model(index_name, manifest)
    params = fusion_params(relevance.info if relevance else None, fusion)
    outcome = search(index, encoder, queries, k, mode=mode, store=open_store(index_name), relevance_model=relevance,
                     params=params)
    return SearchResult(ids=[[h.id for h in hits] for hits in outcome.hits],
                        scores=[np.array([h.score for h in hits], dtype=np.float32) for hits in outcome.hits])
