"""Encoding and reranking throughput per runtime, side by side in one run: plain sentence-transformers,
ours on torch, ours on ONNX fp32, ours on ONNX int8 (issue 18).

    retriever export onnx default --optimize --quantize int8
    retriever export onnx models/minilm-cross-encoder-untrained --optimize --quantize int8
    python -m bench.throughput --rounds 3

Every round runs every contestant once, in turn, so that a shared, loaded CPU slows them alike; each rate is
the best round's. Documents are SciFact documents of at least 256 tokens (truncated to 256: every one costs
the same), queries SciFact's test queries. Cross-encoder pairs are (test query, long document) truncated to
128 and 256 tokens; its weights are MiniLM's with a fresh one-logit head (as ``retriever train-reranker``
starts), so its scores mean nothing but its cost is real. nDCG@10 is exact search on SciFact test per
backend, through the shared embedding cache (the torch corpus is warm; each ONNX corpus is encoded once, by
the export's int8 guard or here).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np
import torch
import typer
from sentence_transformers import CrossEncoder
from torch.utils.flop_counter import FlopCounterMode

from bench.results import record
from bench.serve_load import cross_encoder_dir
from retriever.data import load_dataset
from retriever.encoders import DEFAULT_MODEL_ID, BiEncoder, EmbeddingCache, TextEncoder, load_sentence_transformer
from retriever.errors import ModelError
from retriever.onnx.guard import MAX_NDCG_LOSS, dense_ndcg
from retriever.onnx.runtime import SPIN_ENV
from retriever.rerank import load_reranker

logger = logging.getLogger("bench.throughput")
BACKENDS = ("torch", "onnx", "onnx-int8")


def long_documents(dataset, tokenizer, n: int, tokens: int = 256) -> list[str]:
    texts = dataset.doc_texts()
    lengths = [len(ids) for ids in tokenizer(texts[: 20 * n], add_special_tokens=True)["input_ids"]]
    chosen = [t for t, length in zip(texts, lengths, strict=False) if length >= tokens][:n]
    if len(chosen) < n:
        raise typer.BadParameter(f"only {len(chosen)} documents have {tokens} tokens")
    return chosen


def interleaved(contestants: dict[str, Callable[[list], object]], items: list, rounds: int) -> dict[str, float]:
    """Items per second of each contestant on ``items``: the best of ``rounds`` rounds, contestants in
    turn within each round (after a warm-up on a few items: threads, allocator, session)."""
    best = dict.fromkeys(contestants, float("inf"))
    for contestant in contestants.values():
        contestant(items[:8])
    for _ in range(rounds):
        for name, contestant in contestants.items():
            start = time.perf_counter()
            contestant(items)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(items) / seconds for name, seconds in best.items()}


def encoders(batch_size: int) -> dict[str, TextEncoder]:
    out = {}
    for backend in BACKENDS:
        try:
            out[backend] = TextEncoder.load("default", device="cpu", cache=None, backend=backend,
                                            batch_size=batch_size)
        except ModelError as exc:
            logger.warning("skipping %s: %s", backend, exc)
    return out


def int8_variants(batch_size: int) -> dict[str, TextEncoder]:
    """The int8 encoder at other batch sizes, and with spinning ORT workers (ORT's default; ours is off)."""
    out = {f"onnx-int8-b{b}": TextEncoder.load("default", device="cpu", cache=None, backend="onnx-int8",
                                               batch_size=b) for b in (8, 16, 64) if b != batch_size}
    os.environ[SPIN_ENV] = "1"
    try:
        out["onnx-int8-spin"] = TextEncoder.load("default", device="cpu", cache=None, backend="onnx-int8",
                                                 batch_size=batch_size)
    finally:
        del os.environ[SPIN_ENV]
    return out


def rerankers(max_length: int, batch_size: int) -> dict:
    out = {}
    for backend in BACKENDS:
        try:
            out[backend] = load_reranker(str(cross_encoder_dir()), batch_size, max_length, "cpu", backend)
        except ModelError as exc:
            logger.warning("skipping cross-encoder %s: %s", backend, exc)
    return out


def rerank_rates(queries: list[str], docs: list[str], max_length: int, rounds: int, batch_size: int):
    plain = CrossEncoder(str(cross_encoder_dir()), device="cpu", max_length=max_length)
    ours = rerankers(max_length, batch_size)
    pairs = [(queries[i % len(queries)], d) for i, d in enumerate(docs)]
    contestants = {"st": lambda p: plain.predict(p, batch_size=batch_size)}
    contestants |= {b: (lambda p, r=r: r.score_pairs([q for q, _ in p], [d for _, d in p])) for b, r in ours.items()}
    return interleaved(contestants, pairs, rounds)


def main(
    dataset: str = typer.Option("scifact"),
    n_docs: int = typer.Option(128, min=10, help="Documents of >= 256 tokens to encode per round."),
    n_pairs: int = typer.Option(100, min=10, help="Cross-encoder pairs per round and length."),
    rounds: int = typer.Option(3, min=1),
    batch_size: int = typer.Option(32, min=1),
    ndcg: bool = typer.Option(True, help="nDCG@10 on the test split per backend (encodes uncached corpora)."),
    latency_only: bool = typer.Option(False, help="Only the rerank-latency record."),
    variants: bool = typer.Option(False, help="Also the int8 encoder at batch 8/16/64 and with spinning "
                                              "workers (documents/s only, interleaved with the rest)."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if latency_only:
        data = load_dataset(dataset)
        latency(next(iter(data.split_queries("test").values())), data, rounds)
        return
    data = load_dataset(dataset)
    plain = load_sentence_transformer("default", device="cpu")
    ours = encoders(batch_size)
    docs = long_documents(data, plain.tokenizer, n_docs)
    queries = list(data.split_queries("test").values())
    start = time.perf_counter()

    def st(side: str):
        encode = plain.encode_query if side == "query" else plain.encode_document
        return lambda texts: encode(texts, batch_size=batch_size, normalize_embeddings=True)

    def runtime(side: str):
        return {b: (lambda texts, e=e: e.encode(texts, side=side)) for b, e in ours.items()}

    extra = ({n: (lambda texts, e=e: e.encode(texts, side="document")) for n, e in int8_variants(batch_size).items()}
             if variants else {})
    doc_rate = interleaved({"st": st("document")} | runtime("document") | extra, docs, rounds)
    query_rate = interleaved({"st": st("query")} | runtime("query"), queries, rounds)
    pair_rate = {n: rerank_rates(queries, long_documents(data, plain.tokenizer, n_pairs), n, rounds, batch_size)
                 for n in (128, 256)}
    quality = {}
    if ndcg:
        for backend in ours:
            encoder = TextEncoder.load("default", device="cpu", cache=EmbeddingCache(), backend=backend,
                                       batch_size=64, show_progress=True)
            quality[backend] = dense_ndcg(BiEncoder(encoder), data, "test")
            logger.info("nDCG@10 %s: %.4f", backend, quality[backend])
    report(data.name, doc_rate, query_rate, pair_rate, quality, time.perf_counter() - start,
           dict(n_docs=len(docs), n_queries=len(queries), n_pairs=n_pairs, rounds=rounds, batch_size=batch_size))
    latency(queries[0], data, rounds)


def report(dataset: str, doc_rate: dict, query_rate: dict, pair_rate: dict, quality: dict, seconds: float,
           setup: dict) -> None:
    metrics: dict[str, float] = dict(setup) | {"load_avg_1m_end": os.getloadavg()[0]}
    for name, rate in doc_rate.items():
        metrics[f"docs_per_s_{name}"] = rate
        metrics[f"ratio_docs_{name}"] = rate / doc_rate["st"]
    for name, rate in query_rate.items():
        metrics[f"queries_per_s_{name}"] = rate
    for length, rates in pair_rate.items():
        for name, rate in rates.items():
            metrics[f"pairs_per_s_{length}_{name}"] = rate
    for name, value in quality.items():
        metrics[f"ndcg@10_{name}"] = value
    guarded = [b for b in doc_rate if b in BACKENDS and (b == "torch" or (
        b in quality and "torch" in quality and quality["torch"] - quality[b] <= MAX_NDCG_LOSS))]
    best = max(guarded, key=doc_rate.__getitem__)
    metrics["best_guarded_backend"] = best
    metrics["speedup_best_guarded"] = doc_rate[best] / doc_rate["st"]
    print("\n".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items()))
    record(dataset, "corpus", "encode-throughput", DEFAULT_MODEL_ID, metrics, seconds, speed=True)


def latency(query: str, data, rounds: int) -> None:
    """Seconds to rerank one test query's top 100 dense candidates (SciFact documents as they are), truncated
    at 128 tokens (the recorded figure: the length the task sets for the rerankers trained here) and at 256,
    every backend in turn in each round; the corpus vectors come from the (warm) embedding cache."""
    encoder = TextEncoder.load("default", device="cpu", backend="torch")
    texts = data.doc_texts()
    scores = encoder.encode(texts) @ encoder.encode([query], side="query")[0]
    candidates = [texts[i] for i in np.argsort(-scores)[:100]]
    start = time.perf_counter()
    metrics: dict[str, float] = {"load_avg_1m_start": os.getloadavg()[0]}
    for max_length in (128, 256):
        ours = rerankers(max_length, 32)
        rates = interleaved({b: (lambda docs, r=r: r.score_pairs([query] * len(docs), docs))
                             for b, r in ours.items()}, candidates, rounds)
        metrics |= {f"seconds_per_100_candidates_{b}_{max_length}": 100 / r for b, r in rates.items()}
        fastest = max(rates, key=rates.__getitem__)
        if max_length == 128:
            metrics |= {"seconds_per_100_candidates": 100 / rates[fastest], "backend": fastest, "max_length": 128}
    metrics |= compute_bound(candidates, query, metrics["seconds_per_100_candidates"])
    metrics["load_avg_1m_end"] = os.getloadavg()[0]
    print("\n".join(f"{k}: {v}" for k, v in metrics.items()))
    record(data.name, "test", "rerank-latency", "minilm-cross-encoder-untrained", metrics,
           time.perf_counter() - start, speed=True)


def compute_bound(candidates: list[str], query: str, seconds: float) -> dict[str, float]:
    """The compute-bound argument as numbers: FLOPs of one 128-token pair (torch's FLOP counter on the
    cross-encoder), the fp32 GEMM rate this CPU sustains at the model's shapes (a batch of 32 pairs x 128
    tokens through a 384 x 1536 FFN matrix, all cores), the fp32 lower bound for 100 pairs that gives, and
    the rate the measured latency implies."""
    model = CrossEncoder(str(cross_encoder_dir()), device="cpu", max_length=128)
    features = model.tokenizer([query], [candidates[0]], truncation="longest_first", max_length=128,
                               padding="max_length", return_tensors="pt")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.model(**features)
    flops = counter.get_total_flops()
    a, b = torch.randn(32 * 128, 384), torch.randn(384, 1536)
    for _ in range(3):
        a @ b
    reps, start = 20, time.perf_counter()
    for _ in range(reps):
        a @ b
    gemm = 2 * a.shape[0] * a.shape[1] * b.shape[1] * reps / (time.perf_counter() - start)
    return {"gflop_per_pair_128": flops / 1e9, "gemm_gflops_fp32": gemm / 1e9,
            "seconds_per_100_at_gemm_rate": 100 * flops / gemm, "achieved_gops": 100 * flops / seconds / 1e9,
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    typer.run(main)
