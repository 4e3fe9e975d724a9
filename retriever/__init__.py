"""Core library: BEIR data, encoders, FAISS indexes, relevance filtering and evaluation."""

from retriever.errors import RetrieverError

__all__ = ["RetrieverError"]
__version__ = "0.1.0"
