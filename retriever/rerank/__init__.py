"""Rerankers: cross-encoders, yes/no causal LMs and the bi-encoder fallback, behind one ``score_pairs``."""

from retriever.rerank.base import Reranker, length_sorted_batches, rerank_run
from retriever.rerank.bi_encoder import BiEncoderReranker
from retriever.rerank.loading import load_reranker, reranker_arch

__all__ = ["BiEncoderReranker", "Reranker", "length_sorted_batches", "load_reranker", "rerank_run", "reranker_arch"]
