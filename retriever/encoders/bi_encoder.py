"""A query tower and a document tower; by default both are the same model."""

from __future__ import annotations

import numpy as np

from retriever.encoders.text_encoder import TextEncoder
from retriever.errors import ModelError


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
        document = TextEncoder.load(model, **kwargs)
        query = TextEncoder.load(query_model, **kwargs) if query_model else document
        return cls(query, document)

    @property
    def shared(self) -> bool:
        return self.query is self.document

    @property
    def dimension(self) -> int:
        return self.document.dimension

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.query.encode(texts, side="query")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return self.document.encode(texts, side="document")
