"""Milvus backend of the vector store interface, through ``pymilvus``.

A local file URI (``./indexes/name/milvus.db``) runs Milvus Lite embedded; an ``http://host:19530`` URI
talks to a Milvus standalone server or a cluster (sharding, replicas and GPU indexes are the server's
business). Vectors live in Milvus; the index folder keeps the manifest, which names the URI and collection.

A collection built with ``text=True`` (the default) also holds each document's text, its BM25 sparse vector
(Milvus' BM25 function) and its metadata: lexical and hybrid search then run inside Milvus
(:mod:`retriever.index.milvus_text`, :mod:`retriever.hybrid_milvus`). A collection without them (built
before, or ``text=False``) keeps the lexical side in process (the FTS5 document store), as FAISS does.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

import numpy as np

from retriever.errors import RetrieverError
from retriever.index import milvus_text
from retriever.index.faiss_index import SearchResult

logger = logging.getLogger(__name__)
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()
BATCH = 1000


def client_for(uri: str):
    """One client per URI per process (Milvus Lite serves one file from one local server)."""
    try:
        from pymilvus import MilvusClient  # optional extra (milvus)
    except ImportError:
        raise RetrieverError("the milvus backend needs pymilvus (pip install 'retrieval-trainer[milvus]')") from None
    with _clients_lock:
        if uri not in _clients:
            if not uri.startswith(("http://", "https://", "tcp://")):
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                _clients[uri] = MilvusClient(uri)
            except Exception as exc:  # connection and start-up errors come in many types
                raise RetrieverError(f"cannot reach Milvus at {uri}: {str(exc).splitlines()[0][:160]}") from None
        return _clients[uri]


def index_params_for(spec: str) -> tuple[str, dict, dict]:
    """FAISS-style spec -> (Milvus index type, build params, search params)."""
    if spec == "Flat":
        return "FLAT", {}, {}
    if match := re.fullmatch(r"HNSW(\d+)", spec):
        return "HNSW", {"M": int(match.group(1)), "efConstruction": 200}, {"ef": 128}
    if match := re.fullmatch(r"IVF(\d+),Flat", spec):
        nlist = int(match.group(1))
        return "IVF_FLAT", {"nlist": nlist}, {"nprobe": max(1, nlist // 16)}
    raise RetrieverError(f"index spec '{spec}' has no Milvus equivalent (use Flat, HNSW<M> or IVF<n>,Flat)")


class MilvusStore:
    backend = "milvus"

    def __init__(self, uri: str, collection: str, spec: str = "Flat") -> None:
        self.uri, self.collection, self.spec = uri, collection, spec
        self.client = client_for(uri)
        self._search_params = index_params_for(spec)[2]
        self._text: tuple[bool, bool] | None = None  # (has texts, stemmed here), read once

    def _text_kind(self) -> tuple[bool, bool]:
        if self._text is None:
            info = self.client.describe_collection(self.collection)
            self._text = (any(f["name"] == milvus_text.SPARSE for f in info["fields"]),
                          (info.get("properties") or {}).get(milvus_text.STEMMED[0]) == milvus_text.STEMMED[1])
        return self._text

    @property
    def has_text(self) -> bool:
        """The collection holds texts and their BM25 vectors: lexical and hybrid search run in Milvus."""
        return self._text_kind()[0]

    @property
    def stemmed(self) -> bool:
        """Texts and queries reach Milvus as stems (see :mod:`retriever.index.milvus_text`)."""
        return self._text_kind()[1]

    @classmethod
    def create(cls, dimension: int, spec: str, uri: str, collection: str, text: bool = True,
               stem: bool = True) -> MilvusStore:
        from pymilvus import DataType, MilvusClient  # optional extra (milvus)

        index_type, build, _ = index_params_for(spec)
        client = client_for(uri)
        if client.has_collection(collection):
            client.drop_collection(collection)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        params = client.prepare_index_params()
        params.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=build)
        if text:
            milvus_text.add_text_fields(schema, params)
        try:
            client.create_collection(collection, schema=schema, index_params=params)
            if text and stem:
                client.alter_collection_properties(collection, properties=dict([milvus_text.STEMMED]))
        except Exception as exc:  # e.g. an index type Milvus Lite does not have
            raise RetrieverError(f"Milvus cannot create {index_type} at {uri}: {str(exc).splitlines()[0][:160]}") \
                from None
        return cls(uri, collection, spec)

    @property
    def dimension(self) -> int:
        fields = self.client.describe_collection(self.collection)["fields"]
        vector = next(f for f in fields if f["name"] == "vector")
        return int(vector["params"]["dim"])

    @property
    def on_gpu(self) -> bool:
        return False  # a Milvus server may use GPU indexes; that is invisible from here

    def __len__(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    @property
    def ids(self) -> set[str]:
        iterator = self.client.query_iterator(self.collection, batch_size=BATCH, filter='id != ""',
                                              output_fields=milvus_text.ID_ONLY)
        out: set[str] = set()
        while batch := iterator.next():
            out.update(row["id"] for row in batch)
        iterator.close()
        return out

    def __contains__(self, doc_id: str) -> bool:
        return bool(self.client.get(self.collection, ids=[doc_id], output_fields=milvus_text.ID_ONLY))

    def add(self, doc_ids: list[str], vectors: np.ndarray, documents: list[tuple] | None = None) -> None:
        """Upsert. A collection with texts needs ``documents`` (``(id, title, text[, metadata])`` rows aligned
        with ``doc_ids``): one Milvus upsert then carries text, metadata and vector together."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(doc_ids):
            raise RetrieverError(f"{len(vectors)} vectors of shape {vectors.shape} for {len(doc_ids)} ids")
        if len(set(doc_ids)) != len(doc_ids):
            raise RetrieverError("duplicate document ids in one add")
        if self.has_text and (documents is None or len(documents) != len(doc_ids)):
            raise RetrieverError(f"Milvus collection '{self.collection}' holds texts for BM25: an upsert needs "
                                 "each document's title and text, not only its vector")
        for start in range(0, len(doc_ids), BATCH):
            ids, chunk = doc_ids[start:start + BATCH], vectors[start:start + BATCH].tolist()
            rows = (milvus_text.rows(ids, chunk, documents[start:start + BATCH], self.stemmed) if self.has_text
                    else [{"id": d, "vector": v} for d, v in zip(ids, chunk, strict=True)])
            self.client.upsert(self.collection, data=rows)
        if self.has_text and doc_ids:
            self.client.flush(self.collection)  # seal the segment: BM25 statistics of the whole collection

    def remove(self, doc_ids: list[str]) -> int:
        present = (self.client.get(self.collection, ids=list(doc_ids), output_fields=milvus_text.ID_ONLY)
                   if doc_ids else [])
        if present:
            self.client.delete(self.collection, ids=[row["id"] for row in present])
            if self.has_text:
                self.client.flush(self.collection)
        return len(present)

    def search(self, queries: np.ndarray, k: int, allowed: set[str] | None = None, expr: str = "") -> SearchResult:
        """Top-k by inner product; ``allowed`` becomes a Milvus filter expression (``id in [...]``), and
        ``expr`` (a compiled ``where``) joins it, so the restriction happens inside the vector search."""
        if k <= 0:
            raise RetrieverError(f"k must be positive, got {k}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if allowed is not None and not allowed:
            return SearchResult(ids=[[] for _ in queries], scores=[np.zeros(0, np.float32) for _ in queries])
        expr = milvus_text.combine(expr, f"id in {json.dumps(sorted(allowed))}" if allowed is not None else "")
        hits = self.client.search(self.collection, data=queries.tolist(), limit=min(k, 16384), anns_field="vector",
                                  search_params={"metric_type": "IP", "params": self._search_params},
                                  filter=expr, output_fields=milvus_text.ID_ONLY)
        ids = [[h["id"] for h in row] for row in hits]
        scores = [np.array([h["distance"] for h in row], dtype=np.float32) for row in hits]
        return SearchResult(ids=ids, scores=scores)

    def vectors(self, doc_ids: list[str]) -> np.ndarray | None:
        """Stored vectors (rows in order; NaN rows for unknown ids)."""
        rows = {r["id"]: r["vector"] for r in self.client.get(self.collection, ids=list(doc_ids),
                                                               output_fields=["vector"])} if doc_ids else {}
        out = np.full((len(doc_ids), self.dimension), np.nan, dtype=np.float32)
        for i, d in enumerate(doc_ids):
            if d in rows:
                out[i] = rows[d]
        return out

    def bm25_search(self, queries: list[str], k: int, expr: str = "") -> milvus_text.Hits:
        """Milvus' BM25 top-``k`` ``(id, score)`` per query, inside ``expr``."""
        return milvus_text.bm25_search(self.client, self.collection, queries, k, expr, self.stemmed)

    def bm25_of(self, query: str, ids: list[str], expr: str = "") -> dict[str, float]:
        return milvus_text.bm25_of(self.client, self.collection, query, ids, expr, self.stemmed)

    def hybrid_rrf(self, queries: list[str], vectors: np.ndarray, k: int, depth: int,
                   expr: str = "") -> milvus_text.Hits:
        """Milvus' ``hybrid_search`` with ``RRFRanker(60)`` over both sides' top-``depth``."""
        return milvus_text.hybrid_rrf(self.client, self.collection, queries, np.asarray(vectors, np.float32), k, depth,
                                      self._search_params, expr, self.stemmed)

    def persist(self, folder: Path) -> dict:
        self.client.flush(self.collection)
        return {"uri": self.uri, "collection": self.collection}

    @classmethod
    def restore(cls, folder: Path, spec: str, options: dict, use_gpu: bool = True) -> MilvusStore:
        store = cls(options["uri"], options["collection"], spec)
        if not store.client.has_collection(store.collection):
            raise RetrieverError(f"Milvus at {store.uri} has no collection '{store.collection}'")
        store.client.load_collection(store.collection)  # a new process finds a BM25 one released (Lite 3.2.2)
        return store
