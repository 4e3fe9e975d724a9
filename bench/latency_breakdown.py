"""Issue 18: where one /search request's time goes, stage by stage, in process (no load generator, no socket).

    python -m bench.latency_breakdown --index scifact-zero-shot --dataset scifact --backend onnx-int8

Each stage runs alone over the same SciFact test queries, one query per call (what a concurrency-1 client
sends), and is reported as its median and 90th percentile in ms. ONNX forward variants (int8 / fp32, intra-op
threads 1 / 2, idle workers spinning or not, graph optimisation level) take turns query by query, so that
they share the machine's load. ``app_*`` stages send the request through the whole FastAPI app in process
(httpx's ASGI transport: routing, validation, middleware, executor hops, response serialisation, but no
socket and no uvicorn); ``app_search_warm`` has the query vector in the service's LRU, i.e. everything but
the model. Recorded as ``search-latency-breakdown``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import typer

from bench.results import ROOT, record
from retriever.data import load_dataset
from retriever.onnx.files import int8_file_name
from retriever.onnx.runtime import encode_onnx
from service.app import create_app
from service.batching import MicroBatcher
from service.schemas import SearchHit, SearchRequest, SearchResponse, SearchResult
from service.settings import Settings

logger = logging.getLogger("bench.latency_breakdown")


def summary(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), float(np.percentile(ms, 90))


def timed(fn: Callable, items: list) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append(1000 * (time.perf_counter() - start))
    return out


def ort_session(path, threads: int, spin: bool, level: str = "all"):
    import onnxruntime as ort  # optional extra (onnx)

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def forward_variants(encoder, feeds: list[dict]) -> dict[str, list[float]]:
    """ORT forward of one query per call, every variant taking its turn on each query."""
    folder = encoder.onnx.path.parent
    int8, fp32 = folder / int8_file_name(), folder / "model_O2.onnx"
    variants = {f"forward_int8_t{t}_spin{int(s)}": ort_session(int8, t, s) for t in (1, 2) for s in (False, True)}
    variants |= {f"forward_fp32_t{t}_spin0": ort_session(fp32, t, False) for t in (1, 2)}
    variants["forward_int8_t2_spin0_basic"] = ort_session(int8, 2, False, "basic")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for feed in feeds[:10]:  # warm-up
        for session in variants.values():
            session.run(None, feed)
    for feed in feeds:
        for name, session in variants.items():
            start = time.perf_counter()
            session.run(None, feed)
            times[name].append(1000 * (time.perf_counter() - start))
    return times


def encoder_stages(encoder, queries: list[str]) -> dict[str, list[float]]:
    model = encoder.model
    feeds = [{k: v.numpy() for k, v in model.preprocess([q]).items() if k in encoder.onnx.inputs} for q in queries]
    out = {"tokenise_st_preprocess": timed(lambda q: model.preprocess([q]), queries),
           "tokenise_tokenizer_np": timed(lambda q: model.tokenizer([q], return_tensors="np"), queries),
           "forward_served": timed(encoder.onnx.run, feeds)}
    vector = encoder.onnx.run(feeds[0])
    out["normalise"] = timed(lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12), [vector] * 300)
    out["encode_onnx"] = timed(lambda q: encode_onnx(model, encoder.onnx, [q], "query", encoder.batch_size), queries)
    out["encode_in_memory"] = timed(lambda q: encoder.encode_in_memory([q], "query", None), queries)
    return out | forward_variants(encoder, feeds)


def index_stages(runtime, live, queries: list[str], vectors: np.ndarray) -> dict[str, list[float]]:
    rows = list(range(len(queries)))
    dense = [SearchRequest(query=q, mode="dense", filter="none") for q in queries]
    hybrid = [SearchRequest(query=q, mode="hybrid", filter="none") for q in queries]
    ids = [h.id for h in runtime._search(live, dense[0], "dense", vectors[:1], None, 10).hits[0]]
    passes = [live.store.lexical_pass(q, None) for q in queries]
    return {
        "faiss_search": timed(lambda i: live.index.search(vectors[i:i + 1], 10), rows),
        "search_dense": timed(lambda i: runtime._search(live, dense[i], "dense", vectors[i:i + 1], None, 10), rows),
        "lexical_pass": timed(lambda q: live.store.lexical_pass(q, None), queries),
        "search_hybrid_after_pass": timed(lambda i: runtime._search(live, hybrid[i], "hybrid", vectors[i:i + 1], None,
                                                                    10, [passes[i]]), rows),
        "docstore_fetch_10": timed(lambda _: live.texts(ids), rows),
    }


def response_stage(runtime, live, queries: list[str], vectors: np.ndarray) -> dict[str, list[float]]:
    """Building the response model and serialising it as FastAPI does (validate against the response model,
    then pydantic's JSON dump)."""
    request = SearchRequest(query=queries[0], mode="dense", filter="none")
    outcome = runtime._search(live, request, "dense", vectors[:1], None, 10)
    docs = live.texts([h.id for h in outcome.hits[0]])

    def build(_) -> bytes:
        hits = [SearchHit(id=h.id, score=h.score, title=docs[h.id][0], text=docs[h.id][1]) for h in outcome.hits[0]]
        response = SearchResponse(index=live.name, mode="dense", fusion=None, calibrated=False, threshold=None,
                                  results=[SearchResult(query=queries[0], hits=hits)], timings_ms={"encode": 1.0})
        return SearchResponse.model_validate(response).model_dump_json().encode()

    return {"response_build_serialise": timed(build, range(300))}


async def hop_stages(queries: list[str]) -> dict[str, list[float]]:
    """Round trips to a worker thread and through the micro-batcher, with a no-op model."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1)
    batcher = MicroBatcher(lambda items: items, ThreadPoolExecutor(1))
    out: dict[str, list[float]] = {"executor_hop": [], "batcher_hop": []}
    for q in queries:
        start = time.perf_counter()
        await loop.run_in_executor(pool, len, q)
        out["executor_hop"].append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        await batcher.submit([q])
        out["batcher_hop"].append(1000 * (time.perf_counter() - start))
    await batcher.close()
    return out


async def app_stages(app, queries: list[str]) -> dict[str, list[float]]:
    import httpx  # optional: the dev extra

    out: dict[str, list[float]] = {"app_health": [], "app_search_dense": [], "app_search_warm": []}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        for q in queries:
            for name, payload in (("app_search_dense", {"query": q, "mode": "dense", "filter": "none"}),
                                  ("app_search_warm", {"query": queries[0], "mode": "dense", "filter": "none"}),
                                  ("app_health", None)):
                start = time.perf_counter()
                r = await (client.get("/health") if payload is None else client.post("/search", json=payload))
                out[name].append(1000 * (time.perf_counter() - start))
                assert r.status_code == 200, r.text
    return out


async def async_stages(app, runtime, texts: list[str]) -> dict[str, list[float]]:
    try:
        return await hop_stages(texts) | await app_stages(app, texts)
    finally:
        await runtime.close()


def main(index: str = typer.Option("scifact-zero-shot"), dataset: str = typer.Option("scifact"),
         backend: str = typer.Option("onnx-int8"), queries: int = typer.Option(300)) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    texts = list(load_dataset(dataset).split_queries("test").values())[:queries]
    started = time.time()
    load = os.getloadavg()[0]
    settings = Settings(indexes=[str(ROOT / "indexes" / index)], backend=backend, vector_cache_size=2,
                        log_json=False)  # LRU of 2: the warm query stays cached between the others
    app = create_app(settings, load=False)
    runtime = app.state.runtime
    runtime.load_all()
    live = runtime.get(None)
    encoder = live.encoder.query
    vectors = encoder.encode_in_memory(texts, "query", None)
    times = encoder_stages(encoder, texts)
    times |= index_stages(runtime, live, texts, vectors) | response_stage(runtime, live, texts, vectors)
    times |= asyncio.run(async_stages(app, runtime, texts))
    metrics: dict[str, float] = {"queries": len(texts), "load_avg_1m_before": load}
    for name, ms in times.items():
        metrics[f"{name}_p50_ms"], metrics[f"{name}_p90_ms"] = summary(ms)
        logger.info("%-32s p50 %7.3f ms  p90 %7.3f ms", name, *summary(ms))
    metrics["load_avg_1m_after"] = os.getloadavg()[0]
    tokens = [len(encoder.model.tokenizer(q)["input_ids"]) for q in texts]
    metrics["query_tokens_p50"] = float(np.median(tokens))
    record(dataset, "test", "search-latency-breakdown", f"all-MiniLM-L6-v2 {backend}", metrics, time.time() - started,
           speed=True)


if __name__ == "__main__":
    typer.run(main)
