"""Lexical and hybrid search inside Milvus, for a collection that holds its texts (``index.has_text``).

:func:`retriever.search.search` hands such an index here for every lexical or hybrid query and every
filtered one; the FTS5 document store is then not searched (it still holds the texts and metadata the
service returns, and its own FTS5 postings, which duplicate Milvus' BM25 postings).

- ``lexical``: Milvus' BM25 search on the sparse field.
- ``hybrid`` with RRF: Milvus' ``hybrid_search`` with ``RRFRanker(60)`` over both sides' top-``depth``,
  when the answer carries no calibrated relevance. With a calibrated index the hits need each side's raw
  score, which ``hybrid_search`` does not return: then, as for every other fusion, the two single searches.
- ``convex`` / ``tmm`` / ``calibrated``: the two single searches (dense, BM25), each candidate completed
  with the other side's score (its stored vector's cosine; its BM25 from a search restricted to it), and
  our fusion in process. Milvus' ``WeightedRanker`` is not used: it normalises each side by arctan
  (``0.5 + atan(ip)/pi``, ``2 atan(bm25)/pi``; measured on Milvus Lite 3.2.2), not by our per-query
  min-max (convex) or theoretical min-max (tmm), and sees only each side's own hits.
- ``where`` compiles to one Milvus ``expr`` (:func:`retriever.where.to_milvus_expr`) applied inside both
  searches.
"""

from __future__ import annotations

import numpy as np

from retriever import fusion as fusion_fns
from retriever.timing import StageTimer
from retriever.where import Where, to_milvus_expr


def native_text(index) -> bool:
    """The vector store runs lexical search itself (a Milvus collection with texts)."""
    return bool(getattr(index, "has_text", False))


class _Filtered:
    """The index seen through a ``where`` expression, for the dense side in :mod:`retriever.search`."""

    def __init__(self, index, expr: str) -> None:
        self.index, self.expr = index, expr

    def search(self, vectors: np.ndarray, k: int, allowed=None):
        return self.index.search(vectors, k, expr=self.expr)

    def vectors(self, doc_ids: list[str]) -> np.ndarray | None:
        return self.index.vectors(doc_ids)


class _MilvusLexical:
    """Milvus' BM25 in the place of the document store's FTS5 pass (:func:`retriever.search.hybrid_candidates`)."""

    def __init__(self, index, expr: str) -> None:
        self.index, self.expr = index, expr

    def lexical_candidates(self, query: str, depth: int, ids: list[str], where=None, done=None):
        """The BM25 top-``depth`` and the BM25 of ``ids`` (those matching a term; one search restricted to
        the ones outside that top)."""
        top = self.index.bm25_search([query], depth, self.expr)[0]
        scores = dict(top)
        scores.update(self.index.bm25_of(query, [d for d in ids if d not in scores], self.expr))
        return top, {d: scores[d] for d in ids if d in scores}


def milvus_candidates(index, queries: list[str], vectors: np.ndarray, depth: int, where: Where | None = None,
                      timer: StageTimer | None = None) -> fusion_fns.Candidates:
    """Both sides' top-``depth`` from Milvus, united, every candidate's cosine and BM25 filled in (what
    :func:`retriever.search.hybrid_candidates` gives over FAISS and FTS5)."""
    from retriever.search import hybrid_candidates  # import cycle: search imports hybrid_milvus

    expr = to_milvus_expr(where)
    return hybrid_candidates(_Filtered(index, expr), _MilvusLexical(index, expr), queries, vectors, depth,
                             timer=timer)


def milvus_search(index, encoder, queries: list[str], k: int, *, mode: str, params, relevance_model=None,
                  min_relevance: float | None = None, where: Where | None = None,
                  query_vectors: np.ndarray | None = None):
    """:func:`retriever.search.search` for an index with :func:`native_text` (same arguments, same outcome)."""
    from retriever import search as s  # import cycle: search imports hybrid_milvus

    timer = StageTimer()
    expr = to_milvus_expr(where)
    if mode == "lexical":
        with timer.stage("lexical"):
            rows = index.bm25_search(queries, k, expr)
        return s.SearchOutcome([[s.Hit(d, v, lexical=v) for d, v in row] for row in rows], False, None, mode, None,
                               timer.ms)
    with timer.stage("encode"):
        vectors = encoder.encode_queries(queries) if query_vectors is None else query_vectors
    if mode == "dense":
        return s._dense(_Filtered(index, expr), vectors, k, relevance_model, min_relevance, None, timer)
    calibrated = params.calibration is not None and relevance_model is not None
    if params.fusion == "rrf" and not calibrated:
        with timer.stage("hybrid_search"):
            rows = index.hybrid_rrf(queries, vectors, k, max(params.depth, k), expr)
        return s.SearchOutcome([[s.Hit(d, v) for d, v in row] for row in rows], False, None, "hybrid", "rrf",
                               timer.ms)
    return s._hybrid(_Filtered(index, expr), _MilvusLexical(index, expr), queries, vectors, k, relevance_model,
                     params, min_relevance, None, None, timer)
