"""The one interface every vector store backend implements (FAISS embedded, Milvus distributed).

Everything above it (pipeline, filtering, the live index, the service) only uses these members, so the
backend is a configuration choice recorded in the index manifest. The backends by name:
:data:`retriever.index.backends.BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class SearchResult:
    """Top-k hits per query: ``ids[i]`` and ``scores[i]`` are sorted by descending cosine."""

    ids: list[list[str]]
    scores: list[np.ndarray]


@runtime_checkable
class VectorStore(Protocol):
    backend: str
    spec: str

    @property
    def dimension(self) -> int: ...

    @property
    def ids(self) -> set[str]: ...

    @property
    def on_gpu(self) -> bool: ...

    def __len__(self) -> int: ...

    def __contains__(self, doc_id: str) -> bool: ...

    def add(self, doc_ids: list[str], vectors: np.ndarray, documents: list[tuple] | None = None) -> None:
        """Insert or replace (upsert). ``documents``: the ``(id, title, text[, metadata])`` rows of
        ``doc_ids``, for a store that indexes texts itself (Milvus with BM25); others ignore them."""

    def remove(self, doc_ids: list[str]) -> int: ...

    def search(self, queries: np.ndarray, k: int, allowed: set[str] | None = None) -> SearchResult:
        """Top-k by inner product over L2-normalised vectors (cosine), best first; ``allowed`` restricts
        the search (inside the backend) to those ids."""

    def vectors(self, doc_ids: list[str]) -> np.ndarray | None:
        """Stored vectors (NaN rows for unknown ids), or None when the backend cannot return them."""

    def persist(self, folder: Path) -> dict:
        """Write what a version folder needs; return backend options for the manifest."""

    @classmethod
    def create(cls, dimension: int, spec: str, **options) -> VectorStore:
        """An empty store; ``options`` are what its backend entry in
        :data:`retriever.index.backends.BACKENDS` derives from the index folder, ``--uri`` and the GPU flag."""

    @classmethod
    def restore(cls, folder: Path, spec: str, options: dict, use_gpu: bool = True) -> VectorStore: ...
