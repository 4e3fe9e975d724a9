"""Quality guards an export must pass before its backend is used: fp32 must reproduce torch (cosine
>= 0.9999 on a sample), int8 must keep nDCG@10 on a held-out split within 0.005 of fp32."""

from __future__ import annotations

import logging

import numpy as np
import torch

from retriever.evaluate import evaluate_run
from retriever.onnx.runtime import OnnxModel, encode_onnx, score_onnx

logger = logging.getLogger(__name__)

MIN_COSINE = 0.9999
MAX_LOGIT_ERROR = 0.01
MAX_NDCG_LOSS = 0.005
FALLBACK_SAMPLE = [
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "The mitochondrion is the powerhouse of the cell, producing ATP through oxidative phosphorylation.",
    "how do vaccines train the immune system",
    "A randomised controlled trial of 1,200 patients found no effect of the drug on mortality. " * 6,
    "short",
    "Ünïcödé text, numbers 3.14159 and symbols: <>&%$#@!",
]


def sample_texts(dataset=None, n: int = 64) -> tuple[list[str], list[str]]:
    """(queries, documents) to compare backends on: the dataset's first ones, else a fixed sample."""
    if dataset is None:
        return FALLBACK_SAMPLE, FALLBACK_SAMPLE
    return list(dataset.queries.values())[:n], dataset.doc_texts()[:n]


def encoder_parity(model, onnx: OnnxModel, queries: list[str], documents: list[str]) -> dict:
    """Cosine between torch's and ONNX's embedding of each sample text, both sides."""
    cosines = []
    for side, texts in (("query", queries), ("document", documents)):
        encode = model.encode_query if side == "query" else model.encode_document
        with torch.inference_mode():
            reference = encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
        cosines.append(np.einsum("ij,ij->i", reference, encode_onnx(model, onnx, texts, side, 16)))
    cos = np.concatenate(cosines)
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "texts": int(cos.size)}


def cross_encoder_scores(model, queries: list[str], documents: list[str]) -> np.ndarray:
    features = model.tokenizer(queries, documents, padding=True, truncation="longest_first",
                               max_length=model.max_length, return_tensors="pt")
    with torch.inference_mode():
        logits = model.model(**features).logits
    return logits.float().numpy().reshape(len(queries), -1)[:, -1]


def cross_encoder_parity(model, onnx: OnnxModel, queries: list[str], documents: list[str]) -> dict:
    pairs_q = [queries[i % len(queries)] for i in range(len(documents))]
    reference = cross_encoder_scores(model, pairs_q, documents)
    scores = score_onnx(model.tokenizer, onnx, pairs_q, documents, model.max_length, 16)
    return {"max_abs_logit_error": float(np.abs(scores - reference).max()), "pairs": len(documents)}


def fp32_verdict(kind: str, parity: dict) -> str | None:
    """None when fp32 passes, else why not."""
    if kind == "bi-encoder" and parity["cosine_min"] < MIN_COSINE:
        return f"fp32 ONNX cosine to torch is {parity['cosine_min']:.6f} < {MIN_COSINE}"
    if kind == "cross-encoder" and parity["max_abs_logit_error"] > MAX_LOGIT_ERROR:
        return f"fp32 ONNX logits differ from torch by {parity['max_abs_logit_error']:.4f} > {MAX_LOGIT_ERROR}"
    return None


def dense_ndcg(encoder, dataset, split: str) -> float:
    """nDCG@10 of exact inner-product search with ``encoder`` (a BiEncoder) over the whole corpus."""
    qrels = dataset.qrels(split)
    queries = dataset.split_queries(split)
    qids = [q for q in queries if q in qrels]
    docs = encoder.encode_documents(dataset.doc_texts())
    scores = encoder.encode_queries([queries[q] for q in qids]) @ docs.T
    top = np.argsort(-scores, axis=1)[:, :10]
    ids = dataset.doc_ids
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    return evaluate_run(qrels, run, ("ndcg@10",))["ndcg@10"]


def rerank_ndcg(model, onnx: OnnxModel, dataset, split: str, depth: int = 20) -> float:
    """nDCG@10 of reranking BM25's top ``depth`` of the split's queries with the ONNX cross-encoder."""
    from retriever.bm25 import Bm25Retriever  # CLI start-up: bm25s loads numba

    qrels = dataset.qrels(split)
    queries = {q: t for q, t in dataset.split_queries(split).items() if q in qrels}
    first = Bm25Retriever(dataset).search(queries, k=depth)
    pairs = [(q, d) for q, hits in first.items() for d in hits]
    texts = dict(zip(dataset.doc_ids, dataset.doc_texts(), strict=True))
    scores = score_onnx(model.tokenizer, onnx, [queries[q] for q, _ in pairs], [texts[d] for _, d in pairs],
                        model.max_length, 32)
    run: dict[str, dict[str, float]] = {}
    for (q, d), s in zip(pairs, scores.tolist(), strict=True):
        run.setdefault(q, {})[d] = s
    return evaluate_run(qrels, run, ("ndcg@10",))["ndcg@10"]


def int8_verdict(ndcg_fp32: float, ndcg_int8: float) -> str | None:
    loss = ndcg_fp32 - ndcg_int8
    if loss > MAX_NDCG_LOSS:
        return f"int8 loses {loss:.4f} nDCG@10 against fp32 ({ndcg_int8:.4f} vs {ndcg_fp32:.4f}; limit {MAX_NDCG_LOSS})"
    return None
