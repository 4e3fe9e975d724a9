"""Rerankers for the service and the CLI: a cross-encoder, or the bi-encoder's cosine as a fallback."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from retriever.encoders import BiEncoder
from retriever.errors import ModelError

logger = logging.getLogger(__name__)


class Reranker(Protocol):
    name: str

    def score(self, query: str, documents: list[str]) -> np.ndarray: ...

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray: ...


class CrossEncoderReranker:
    """sentence-transformers ``CrossEncoder`` scores, batched over every pair of a call."""

    def __init__(self, path: str, batch_size: int = 32, max_length: int | None = None) -> None:
        """``max_length``: truncation, by default the model's own limit."""
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(path, max_length=max_length) if max_length else CrossEncoder(path)
        except Exception as exc:  # missing files, bad config: one clear line
            raise ModelError(f"cannot load reranker '{path}': {str(exc).splitlines()[0][:160]}") from None
        self.name = f"cross-encoder:{path}"
        self.batch_size = batch_size

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        if not queries:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict(list(zip(queries, documents, strict=True)), batch_size=self.batch_size,
                                    show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(len(queries), -1)[:, -1]

    def score(self, query: str, documents: list[str]) -> np.ndarray:
        return self.score_pairs([query] * len(documents), documents)


class BiEncoderReranker:
    """Cosine of the index's own encoder: used when no cross-encoder is configured (flagged in /info)."""

    def __init__(self, encoder: BiEncoder) -> None:
        self.encoder = encoder
        self.name = f"bi-encoder-cosine:{encoder.document.model_id}"

    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        if not queries:
            return np.zeros(0, dtype=np.float32)
        q = self.encoder.encode_queries(queries)
        d = self.encoder.encode_documents(documents)
        return np.einsum("ij,ij->i", q, d).astype(np.float32)

    def score(self, query: str, documents: list[str]) -> np.ndarray:
        if not documents:
            return np.zeros(0, dtype=np.float32)
        return (self.encoder.encode_documents(documents) @ self.encoder.encode_queries([query])[0]).astype(np.float32)
