"""Sentence-transformers encoders with fingerprints, an on-disk embedding cache (an in-memory LRU for
servers), and two towers."""

from retriever.encoders.bi_encoder import BiEncoder
from retriever.encoders.cache import EmbeddingCache, VectorLRU
from retriever.encoders.text_encoder import (
    DEFAULT_MODEL_ID,
    TextEncoder,
    load_sentence_transformer,
    model_fingerprint,
)

__all__ = [
    "BiEncoder",
    "DEFAULT_MODEL_ID",
    "EmbeddingCache",
    "TextEncoder",
    "VectorLRU",
    "load_sentence_transformer",
    "model_fingerprint",
]
