"""Lexical and hybrid search inside Milvus, for a collection that holds its texts (``index.has_text``).

:func:`retriever.search.search` asks :func:`search_sides` which dense index, lexical side and id filter serve
a query; for such a collection they are views of the collection below, and the FTS5 document store is not
searched (it still holds the texts and metadata the service returns, and its own FTS5 postings, which
duplicate Milvus' BM25 postings).

- ``lexical``: Milvus' BM25 search on the sparse field.
- ``hybrid`` with RRF: Milvus' ``hybrid_search`` with ``RRFRanker(60)`` over both sides' top-``depth``
  (:func:`native_rrf`), when the answer carries no calibrated relevance. With a calibrated index the hits
  need each side's raw score, which ``hybrid_search`` does not return: then, as for every other fusion, the
  two single searches.
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

from retriever.timing import StageTimer
from retriever.where import Where, to_milvus_expr


def native_text(index) -> bool:
    """The vector store runs lexical search itself (a Milvus collection with texts)."""
    return bool(getattr(index, "has_text", False))


class FilteredIndex:
    """The collection seen through a ``where`` expression: the dense side of :mod:`retriever.search`."""

    def __init__(self, index, expr: str) -> None:
        self.index, self.expr = index, expr

    def search(self, vectors: np.ndarray, k: int, allowed=None):
        return self.index.search(vectors, k, expr=self.expr)

    def vectors(self, doc_ids: list[str]) -> np.ndarray | None:
        return self.index.vectors(doc_ids)


class MilvusLexical:
    """Milvus' BM25 in the place of the document store's FTS5 side (``lexical_search`` and
    ``lexical_candidates``, as :class:`~retriever.docstore.DocumentStore` has them; ``where`` is the
    expression given here)."""

    def __init__(self, index, expr: str) -> None:
        self.index, self.expr = index, expr

    def lexical_search(self, queries: list[str], k: int, where=None) -> list[list[tuple[str, float]]]:
        return self.index.bm25_search(queries, k, self.expr)

    def lexical_candidates(self, query: str, depth: int, ids: list[str], where=None, done=None):
        """The BM25 top-``depth`` and the BM25 of ``ids`` (those matching a term; one search restricted to
        the ones outside that top)."""
        top = self.index.bm25_search([query], depth, self.expr)[0]
        scores = dict(top)
        scores.update(self.index.bm25_of(query, [d for d in ids if d not in scores], self.expr))
        return top, {d: scores[d] for d in ids if d in scores}


def search_sides(index, store, where: Where | None, timer: StageTimer):
    """``(dense index, lexical side, allowed ids)`` serving a search: FAISS with the document store's FTS5
    and its ``where`` ids, or a Milvus collection with texts running both sides and the filter itself."""
    if native_text(index):
        expr = to_milvus_expr(where)
        return FilteredIndex(index, expr), MilvusLexical(index, expr), None
    allowed = None
    if where:
        with timer.stage("filter"):
            allowed = store.ids(where)
    return index, store, allowed


def native_rrf(index, fusion: str, calibrated: bool) -> bool:
    """Milvus' own ``hybrid_search`` with ``RRFRanker`` answers this hybrid query (no raw scores needed)."""
    return native_text(index) and fusion == "rrf" and not calibrated
