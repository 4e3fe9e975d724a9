"""FAISS indexes over normalised vectors, with string ids, manifests and atomic versioned saves."""

from retriever.index.faiss_index import FaissIndex, SearchResult
from retriever.index.manifest import DataSource, IndexManifest
from retriever.index.store import index_root, list_indexes, load_index, resolve_index_dir, save_index

__all__ = [
    "DataSource",
    "FaissIndex",
    "IndexManifest",
    "SearchResult",
    "index_root",
    "list_indexes",
    "load_index",
    "resolve_index_dir",
    "save_index",
]
