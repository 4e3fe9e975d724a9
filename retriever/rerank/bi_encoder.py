"""The bi-encoder's own cosine as a reranker: the fallback when no trained reranker is configured."""

from __future__ import annotations

import logging

import numpy as np

from retriever.encoders import BiEncoder

logger = logging.getLogger(__name__)


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
