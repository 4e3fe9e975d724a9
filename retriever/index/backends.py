"""The vector-store backend table: every ``--backend`` an index can be built with, by name.

Adding a backend is one module implementing :class:`~retriever.index.store_api.VectorStore` (``create``,
``restore`` and the search members) plus one line here; unknown names are refused from the table. The
class is imported on first use, so that a missing optional client (pymilvus) breaks only its backend.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retriever.errors import RetrieverError
from retriever.index.store_api import VectorStore
from retriever.tables import table_entry


def _faiss_options(folder: Path | None, uri: str | None, use_gpu: bool) -> dict:
    return {"use_gpu": use_gpu}


def _milvus_options(folder: Path | None, uri: str | None, use_gpu: bool) -> dict:
    """Milvus Lite at ``<folder>/milvus.db`` unless ``uri``; the collection is named after the folder."""
    if folder is None and uri is None:
        raise RetrieverError("the milvus backend needs --uri or an index folder for Milvus Lite")
    collection = re.sub(r"[^A-Za-z0-9_]", "_", (folder.name if folder else "docs"))
    if not collection[0].isalpha():
        collection = "c_" + collection
    return {"uri": uri or str(Path(folder).resolve() / "milvus.db"), "collection": collection}


@dataclass(frozen=True)
class Backend:
    target: str  # "module:Class" of the VectorStore
    create_options: Callable[[Path | None, str | None, bool], dict]  # (folder, uri, use_gpu) -> create kwargs

    def load(self) -> type[VectorStore]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


BACKENDS: dict[str, Backend] = {
    "faiss": Backend("retriever.index.faiss_index:FaissIndex", _faiss_options),
    "milvus": Backend("retriever.index.milvus_store:MilvusStore", _milvus_options),
}


def backend_entry(name: str) -> Backend:
    return table_entry(BACKENDS, "vector store backend", name)


def backend_class(name: str) -> type[VectorStore]:
    return backend_entry(name).load()


def create_store(dimension: int, spec: str = "Flat", backend: str = "faiss", folder: Path | None = None,
                 uri: str | None = None, use_gpu: bool = True) -> VectorStore:
    """An empty vector store of ``backend``: in-process FAISS, or Milvus (Lite at ``<folder>/milvus.db``
    unless ``uri``)."""
    entry = backend_entry(backend)
    return entry.load().create(dimension, spec, **entry.create_options(folder, uri, use_gpu))
