"""The text side of a Milvus collection: Milvus' own BM25 full-text search and ``hybrid_search``.

A collection built with texts (:func:`add_text_fields`) holds, beside ``id`` and ``vector``, the document's
``title + ' ' + text`` in an analyzed VARCHAR field, a sparse field that Milvus' BM25 ``Function`` fills from
it on every insert or upsert (so one upsert carries text and vector together), and the document's
``metadata`` as JSON (what a ``where`` filter, compiled by :func:`retriever.where.to_milvus_expr`, reads).

Analyzer: Milvus' ``standard`` tokenizer, ``lowercase`` and a stop filter with the same English list as the
FTS5 side; a query is its distinct non-stop-word terms (:func:`retriever.lexical.query_terms`), as for FTS5.
Milvus Lite 3.2.2 (a Python reimplementation) has no ``stemmer`` filter (it accepts and ignores it: "run"
does not match "running"), so a collection created with ``stem=True`` (the default; its property
:data:`STEMMED` says so) receives texts and queries already cut into Snowball English stems here (PyStemmer, as
bm25s uses), and Milvus only splits and lowercases them: Lite and a server then index the same tokens.

Milvus Lite keeps BM25 statistics (N, df, avgdl) per segment, and scores a growing (unflushed) segment by
brute force over its own rows, counting only those a filter keeps.
:class:`~retriever.index.milvus_store.MilvusStore` flushes after every text write, which seals the segment;
size-tiered compaction merges small segments later.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import Stemmer

from retriever.lexical.fts5 import STOP_WORDS, TOKEN, query_terms

TEXT, SPARSE, METADATA = "text", "sparse", "metadata"
MAX_TEXT_BYTES = 65535  # Milvus' VARCHAR limit; longer texts are cut (at a character boundary) for BM25 only
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": sorted(STOP_WORDS)}]}
BM25_PARAMS = {"bm25_k1": 1.2, "bm25_b": 0.75}  # FTS5's constants
SEARCH_LIMIT = 16384  # Milvus' largest topk
ID_ONLY = ["id"]  # output fields of a search: Milvus Lite 3.2.2 reads [] as "every field" (vectors, texts)
STEMMED = ("retriever.stems", "snowball-english")  # collection property: texts and queries stemmed here
Hits = list[list[tuple[str, float]]]


@functools.cache
def _stemmer():
    return Stemmer.Stemmer("english")


def stems(text: str) -> list[str]:
    """The non-stop-word tokens of ``text`` (FTS5's token characters), as Snowball English stems."""
    return _stemmer().stemWords([t for t in TOKEN.findall(text.lower()) if t not in STOP_WORDS])


def add_text_fields(schema, params) -> None:
    """The text, sparse (BM25 function output) and metadata fields, and the sparse field's index."""
    from pymilvus import DataType, Function, FunctionType  # optional extra (milvus)

    schema.add_field(TEXT, DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True,
                     analyzer_params=ANALYZER)
    schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field(METADATA, DataType.JSON)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=[TEXT],
                                 output_field_names=[SPARSE]))
    params.add_index(field_name=SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=BM25_PARAMS)


def indexed_text(title: str, text: str, stem: bool = False) -> str:
    """What BM25 indexes (as FTS5: title, a space, text; with ``stem``, its stems), cut to the VARCHAR limit."""
    body = f"{title} {text}"
    if stem:
        body = " ".join(stems(body))
    encoded = body.encode("utf-8")
    return body if len(encoded) <= MAX_TEXT_BYTES else encoded[:MAX_TEXT_BYTES].decode("utf-8", "ignore")


def rows(doc_ids: list[str], vectors: list, documents: list[tuple], stem: bool = False) -> list[dict]:
    """Upsert rows from ``(id, title, text[, metadata])`` documents aligned with ``doc_ids``."""
    out = []
    for doc_id, vector, doc in zip(doc_ids, vectors, documents, strict=True):
        if doc[0] != doc_id:
            raise ValueError(f"document {doc[0]!r} given for id {doc_id!r}")
        metadata = doc[3] if len(doc) > 3 and doc[3] else {}
        out.append({"id": doc_id, "vector": vector, TEXT: indexed_text(doc[1], doc[2], stem), METADATA: metadata})
    return out


def query_text(query: str, stem: bool = False) -> str:
    """The query as Milvus' BM25 function reads it: its distinct non-stop-word terms (or their stems)."""
    return " ".join(dict.fromkeys(stems(query))) if stem else " ".join(query_terms(query))


def bm25_score(distance: float) -> float:
    """Milvus Lite returns BM25 negated (smaller is better); a server returns it as is. BM25 is positive."""
    return abs(float(distance))


def combine(*exprs: str) -> str:
    parts = [e for e in exprs if e]
    return " and ".join(f"({e})" for e in parts)


def bm25_search(client, collection: str, queries: list[str], k: int, expr: str = "", stem: bool = False) -> Hits:
    """BM25 top-``k`` ``(id, score)`` per query, inside ``expr``; a query with no term left matches nothing."""
    texts = [query_text(q, stem) for q in queries]
    asked = [i for i, t in enumerate(texts) if t]
    out: Hits = [[] for _ in queries]
    if not asked or k <= 0:
        return out
    found = client.search(collection, data=[texts[i] for i in asked], anns_field=SPARSE, limit=min(k, SEARCH_LIMIT),
                          search_params={"metric_type": "BM25"}, filter=expr, output_fields=ID_ONLY)
    for i, row in zip(asked, found, strict=True):
        out[i] = [(h["id"], bm25_score(h["distance"])) for h in row]
    return out


def bm25_of(client, collection: str, query: str, ids: list[str], expr: str = "",
            stem: bool = False) -> dict[str, float]:
    """BM25 of the given documents for ``query`` (absent: no query term matches, a score of 0)."""
    if not ids or not query_text(query, stem):
        return {}
    restricted = combine(expr, f"id in {json.dumps(ids)}")
    return dict(bm25_search(client, collection, [query], len(ids), restricted, stem)[0])


def hybrid_rrf(client, collection: str, queries: list[str], vectors: np.ndarray, k: int, depth: int,
               search_params: dict, expr: str = "", stem: bool = False, rrf_k: int = 60) -> Hits:
    """``hybrid_search`` with ``RRFRanker(rrf_k)`` over the dense and the BM25 top-``depth`` per query."""
    from pymilvus import AnnSearchRequest, RRFRanker  # optional extra (milvus)

    out: Hits = []
    for query, vector in zip(queries, vectors.tolist(), strict=True):  # a query with no term: dense side alone
        text = query_text(query, stem)
        requests = [AnnSearchRequest(data=[vector], anns_field="vector", limit=depth, expr=expr or None,
                                     param={"metric_type": "IP", "params": search_params})]
        if text:
            requests.append(AnnSearchRequest(data=[text], anns_field=SPARSE, param={"metric_type": "BM25"},
                                             limit=depth, expr=expr or None))
        found = client.hybrid_search(collection, requests, RRFRanker(rrf_k), limit=min(k, SEARCH_LIMIT),
                                     output_fields=ID_ONLY)
        out.append([(h["id"], float(h["distance"])) for h in found[0]])
    return out
