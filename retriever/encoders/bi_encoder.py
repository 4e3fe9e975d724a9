"""A query tower and a document tower; by default both are the same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retriever.encoders.text_encoder import TextEncoder
from retriever.errors import ModelError

TOWERS_FILE = "towers.json"  # an asymmetric model: {"query": ..., "document": ...}, subfolders or model ids


def load_towers(path: str | Path) -> tuple[str, str] | None:
    """``(query model, document model)`` of an asymmetric model folder, or None for a plain model.
    Each entry is a subfolder of ``path`` or a model id/path of its own."""
    towers = Path(path) / TOWERS_FILE
    if not towers.is_file():
        return None
    spec = json.loads(towers.read_text())

    def resolve(entry: str) -> str:
        return str(Path(path) / entry) if (Path(path) / entry).is_dir() else entry

    return resolve(spec["query"]), resolve(spec["document"])


class BiEncoder:
    """Pairs a query encoder with a document encoder of the same dimension."""

    def __init__(self, query: TextEncoder, document: TextEncoder | None = None) -> None:
        self.query = query
        self.document = document or query
        if self.query.dimension != self.document.dimension:
            raise ModelError(
                f"query tower has dimension {self.query.dimension} but document tower {self.document.dimension}"
            )

    @classmethod
    def load(cls, model: str = "default", query_model: str | None = None, **kwargs) -> BiEncoder:
        towers = load_towers(model) if Path(model).is_dir() else None
        if towers is not None:  # e.g. ADORE output: a trained query tower over an untouched document model
            model, query_model = towers[1], query_model or towers[0]
        document = TextEncoder.load(model, **kwargs)
        query = TextEncoder.load(query_model, **kwargs) if query_model else document
        return cls(query, document)

    @property
    def shared(self) -> bool:
        return self.query is self.document

    @property
    def backend(self) -> str:
        """The runtime of the document tower (the one whose vectors an index stores)."""
        return self.document.backend

    @property
    def dimension(self) -> int:
        return self.document.dimension

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.query.encode(texts, side="query")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return self.document.encode(texts, side="document")
