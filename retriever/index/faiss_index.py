"""A FAISS inner-product index over L2-normalised vectors, addressed by string document ids."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from retriever.errors import RetrieverError
from retriever.index.store_api import SearchResult

__all__ = ["FaissIndex", "SearchResult"]

logger = logging.getLogger(__name__)


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


SMALL_BATCH = 16  # below this many queries FAISS searches on one OpenMP thread (see _one_thread)
IVF_NPROBE_FRACTION = 16  # probe nlist/16 lists (FAISS' own default of 1 loses most neighbours)
HNSW_EF_SEARCH = 128


def set_search_defaults(index: faiss.Index) -> None:
    """Search-time accuracy knobs that FAISS leaves at speed-first defaults (the same as for Milvus)."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    try:
        ivf = faiss.extract_index_ivf(inner)
        ivf.nprobe = max(1, ivf.nlist // IVF_NPROBE_FRACTION)
    except RuntimeError:
        pass
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = HNSW_EF_SEARCH


@contextmanager
def _one_thread(n_queries: int):
    """FAISS parallelises a search over its queries; for one query the other OpenMP threads only add a
    barrier, which on a loaded machine costs more than the search (SciFact, 2 busy cores: 23 ms -> 1 ms)."""
    if n_queries >= SMALL_BATCH:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class FaissIndex:
    """``IndexIDMap2`` over a factory index; labels are int64 positions in :attr:`names`, never reused.

    The embedded default backend of the :class:`~retriever.index.store_api.VectorStore` interface.
    """

    backend = "faiss"

    def __init__(self, index: faiss.Index, names: list[str | None], spec: str, use_gpu: bool = True) -> None:
        self.spec = spec
        set_search_defaults(index)
        self.cpu_index = index
        self.names = np.array(names, dtype=object)
        self._labels = {name: label for label, name in enumerate(names) if name is not None}
        self.index = self._to_gpu(index) if use_gpu else index

    @classmethod
    def create(cls, dimension: int, spec: str = "Flat", use_gpu: bool = True) -> FaissIndex:
        try:
            inner = faiss.index_factory(dimension, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise RetrieverError(f"invalid FAISS index spec '{spec}': {str(exc).splitlines()[0][:160]}") from None
        return cls(faiss.IndexIDMap2(inner), [], spec, use_gpu=use_gpu)

    @staticmethod
    def _to_gpu(index: faiss.Index) -> faiss.Index:
        if gpu_count() == 0:
            return index
        try:
            options = faiss.GpuMultipleClonerOptions()
            options.shard = gpu_count() > 1
            return faiss.index_cpu_to_all_gpus(index, options)
        except (RuntimeError, AttributeError) as exc:  # e.g. HNSW has no GPU version
            logger.info("keeping the index on the CPU: %s", str(exc).splitlines()[0][:120])
            return index

    @property
    def on_gpu(self) -> bool:
        return self.index is not self.cpu_index

    def to_cpu(self) -> faiss.Index:
        """A CPU copy for saving (the GPU index is the live one when present)."""
        return faiss.index_gpu_to_cpu(self.index) if self.on_gpu else self.cpu_index

    def persist(self, folder: Path) -> dict:
        """Write ``index.faiss`` and ``ids.json`` into a (temporary) version folder."""
        faiss.write_index(self.to_cpu(), str(Path(folder) / "index.faiss"))
        (Path(folder) / "ids.json").write_text(json.dumps(self.names.tolist()))
        return {}

    @classmethod
    def restore(cls, folder: Path, spec: str, options: dict, use_gpu: bool = True) -> FaissIndex:
        names = json.loads((Path(folder) / "ids.json").read_text())
        return cls(faiss.read_index(str(Path(folder) / "index.faiss")), names, spec, use_gpu=use_gpu)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    @property
    def ids(self) -> set[str]:
        return set(self._labels)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._labels

    def _check_vectors(self, vectors: np.ndarray, n: int | None = None) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise RetrieverError(f"expected vectors of shape (n, {self.dimension}), got {vectors.shape}")
        if n is not None and len(vectors) != n:
            raise RetrieverError(f"{len(vectors)} vectors for {n} ids")
        return vectors

    def add(self, doc_ids: list[str], vectors: np.ndarray, documents: list[tuple] | None = None) -> None:
        """Insert or replace (upsert) documents; an untrained IVF index is trained on these vectors.
        ``documents`` (texts) are the document store's business here: FAISS keeps vectors only."""
        vectors = self._check_vectors(vectors, len(doc_ids))
        if len(set(doc_ids)) != len(doc_ids):
            raise RetrieverError("duplicate document ids in one add")
        existing = [d for d in doc_ids if d in self._labels]
        if existing:
            self.remove(existing)
        if not self.index.is_trained:
            logger.info("training %s on %d vectors", self.spec, len(vectors))
            self.index.train(vectors)
        start = len(self.names)
        labels = np.arange(start, start + len(doc_ids), dtype=np.int64)
        self.index.add_with_ids(vectors, labels)
        self.names = np.concatenate([self.names, np.array(doc_ids, dtype=object)])
        self._labels.update(zip(doc_ids, labels.tolist(), strict=True))

    def remove(self, doc_ids: list[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        labels = np.array([self._labels[d] for d in doc_ids if d in self._labels], dtype=np.int64)
        if labels.size == 0:
            return 0
        try:
            removed = self.index.remove_ids(faiss.IDSelectorArray(labels.size, faiss.swig_ptr(labels)))
        except RuntimeError:
            raise RetrieverError(
                f"index type '{self.spec}' does not support removing documents; rebuild it or use Flat or IVF"
            ) from None
        for name in self.names[labels].tolist():
            self._labels.pop(name, None)
        self.names[labels] = None
        return int(removed)

    def search(self, queries: np.ndarray, k: int, allowed: set[str] | None = None) -> SearchResult:
        """Exact or approximate top-``k`` by inner product; missing slots (k > size) are dropped.

        ``allowed`` restricts the search to those ids inside FAISS (an ``IDSelector``), so a filter never
        costs recall the way cutting an unfiltered top-k afterwards would."""
        queries = self._check_vectors(queries)
        if k <= 0:
            raise RetrieverError(f"k must be positive, got {k}")
        if allowed is not None:
            return self._search_allowed(queries, k, allowed)
        k = min(k, max(len(self), 1))
        with _one_thread(len(queries)):
            scores, labels = self.index.search(queries, k)
        return self._result(scores, labels)

    def _result(self, scores: np.ndarray, labels: np.ndarray) -> SearchResult:
        valid = labels >= 0
        names = np.full(labels.shape, None, dtype=object)
        names[valid] = self.names[labels[valid]]
        ids = [row[mask].tolist() for row, mask in zip(names, valid, strict=True)]
        return SearchResult(ids=ids, scores=[row[mask] for row, mask in zip(scores, valid, strict=True)])

    def _search_allowed(self, queries: np.ndarray, k: int, allowed: set[str]) -> SearchResult:
        labels = np.array(sorted(self._labels[d] for d in allowed if d in self._labels), dtype=np.int64)
        if labels.size == 0:
            return SearchResult(ids=[[] for _ in queries], scores=[np.zeros(0, np.float32) for _ in queries])
        k = min(k, int(labels.size))
        if self.on_gpu:  # GPU indexes take no selector: score the allowed subset exactly
            vectors = self.index.reconstruct_batch(labels)
            scores = queries @ vectors.T
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            return self._result(np.take_along_axis(scores, order, 1), labels[order])
        selector = faiss.IDSelectorBatch(labels.size, faiss.swig_ptr(labels))
        with _one_thread(len(queries)):
            scores, found = self.index.search(queries, k, params=self._params(selector))
        return self._result(scores, found)

    def _params(self, selector) -> faiss.SearchParameters:
        """Search parameters of the inner index's type (IVF and HNSW params carry their accuracy knobs)."""
        inner = faiss.downcast_index(self.index.index) if isinstance(self.index, faiss.IndexIDMap) else self.index
        try:
            ivf = faiss.extract_index_ivf(inner)
            return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
        except RuntimeError:
            pass
        if hasattr(inner, "hnsw"):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch)
        return faiss.SearchParameters(sel=selector)

    def vectors(self, doc_ids: list[str]) -> np.ndarray | None:
        """Stored vectors (rows in order; NaN rows for unknown ids), or None when the index type cannot
        reconstruct them."""
        out = np.full((len(doc_ids), self.dimension), np.nan, dtype=np.float32)
        rows = [i for i, d in enumerate(doc_ids) if d in self._labels]
        if not rows:
            return out
        labels = np.array([self._labels[doc_ids[i]] for i in rows], dtype=np.int64)
        try:
            out[rows] = self.index.reconstruct_batch(labels)
        except RuntimeError:  # e.g. IVF without a direct map, PQ codes
            return None
        return out
