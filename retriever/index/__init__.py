"""Vector stores (FAISS embedded, Milvus; the table: :mod:`retriever.index.backends`) over normalised
vectors, with string ids, manifests and atomic versioned saves."""

from retriever.index.faiss_index import FaissIndex
from retriever.index.manifest import DataSource, IndexManifest
from retriever.index.store import index_root, list_indexes, load_index, resolve_index_dir, save_index
from retriever.index.store_api import SearchResult, VectorStore

__all__ = [
    "DataSource",
    "FaissIndex",
    "IndexManifest",
    "SearchResult",
    "VectorStore",
    "index_root",
    "list_indexes",
    "load_index",
    "resolve_index_dir",
    "save_index",
]
