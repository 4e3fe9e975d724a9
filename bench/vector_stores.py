"""Issue 11: FAISS flat / HNSW / IVF and Milvus Lite behind the one VectorStore interface, side by side.

    python -m bench.vector_stores --n-synthetic 1000000
    python -m bench.vector_stores --text --dataset scifact --dataset nfcorpus   # issue 19 (bench/milvus_text.py)

Two corpora: the SciFact zero-shot vectors (from the embedding cache) and a seeded synthetic set of
384-dimensional unit vectors drawn around 1,000 random centres (so that approximate indexes have structure
to exploit). For each store: build time, QPS and p50/p99 latency at batch 1 and batch 64, and recall@10
against exact search (FAISS flat).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import typer

from bench.milvus_text import run_dataset
from bench.results import record
from retriever.data import load_dataset
from retriever.encoders import TextEncoder
from retriever.pipeline import create_store

STORES = {
    "store-faiss-flat": ("faiss", "Flat"),
    "store-faiss-hnsw": ("faiss", "HNSW32"),
    "store-faiss-ivf": ("faiss", "IVF{nlist},Flat"),
    "store-milvus-lite": ("milvus", "Flat"),
}


def synthetic(n: int, d: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, d)).astype(np.float32)
    def draw(m: int) -> np.ndarray:
        x = centres[rng.integers(0, 1000, m)] + 0.6 * rng.standard_normal((m, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return draw(n), draw(n_queries)


def scifact_vectors(n_queries: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    data = load_dataset("scifact")
    encoder = TextEncoder.load("default")
    docs = encoder.encode(data.doc_texts(), "document")
    queries = encoder.encode(list(data.split_queries("test").values())[:n_queries], "query")
    return data.doc_ids, docs, queries


def measure(store, queries: np.ndarray, batch: int, n_batches: int) -> dict:
    latencies = []
    start = time.perf_counter()
    for i in range(n_batches):
        chunk = queries[(i * batch) % len(queries):][:batch]
        tick = time.perf_counter()
        store.search(chunk, 10)
        latencies.append((time.perf_counter() - tick) * 1000)
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {"qps": n_batches * batch / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


def run_corpus(name: str, ids: list[str], docs: np.ndarray, queries: np.ndarray) -> None:
    exact = None
    nlist = int(max(16, min(4096, 4 * np.sqrt(len(docs)))))
    for method, (backend, spec) in STORES.items():
        spec = spec.format(nlist=nlist)
        folder = Path(tempfile.mkdtemp()) / "bench"
        try:
            start = time.perf_counter()
            store = create_store(docs.shape[1], spec, backend, folder, use_gpu=True)
            store.add(ids, docs)
            if backend == "milvus":
                store.persist(folder)
            build = time.perf_counter() - start
            found = store.search(queries, 10).ids
            if exact is None:
                exact = found  # FAISS flat comes first: the exact reference
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]))
            for batch, n_batches in ((1, min(300, len(queries))), (64, 20)):
                stats = measure(store, queries, batch, n_batches)
                metrics = stats | {"recall@10_vs_exact": recall, "build_seconds": build, "n_vectors": len(docs),
                                   "batch": batch, "spec": spec}
                logging.info("%s %s batch %d: %s", name, method, batch, metrics)
                record(name, "corpus", method, f"batch={batch}", metrics, build)
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)


def main(n_synthetic: int = typer.Option(1_000_000), n_queries: int = typer.Option(1000),
         seed: int = typer.Option(42),
         text: bool = typer.Option(False, help="Issue 19 instead: Milvus' BM25 and hybrid_search against FTS5 and "
                                               "FAISS + FTS5 on --dataset (bench/milvus_text.py)."),
         dataset: list[str] = typer.Option(["scifact", "nfcorpus"]),
         stem: bool = typer.Option(True, help="--text: send Milvus texts and queries as stems (Lite cannot stem).")
         ) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if text:
        for name in dataset:
            run_dataset(name, stem)
        return
    ids, docs, queries = scifact_vectors(n_queries)
    run_corpus("scifact", ids, docs, queries)
    docs, queries = synthetic(n_synthetic, 384, n_queries, seed)
    label = f"synthetic-{n_synthetic // 1000}k" if n_synthetic < 1_000_000 else f"synthetic-{n_synthetic // 10**6}m"
    run_corpus(label, [f"v{i}" for i in range(n_synthetic)], docs, queries)


if __name__ == "__main__":
    typer.run(main)
