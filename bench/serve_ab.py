"""Issue 18: /search at concurrency 1 on several servers side by side, requests interleaved one by one.

    python -m bench.serve_ab --variant before:commit=dd23fcf,hide=uvloop --variant branch \\
        --variant asyncio-loop:RETRIEVER_LOOP=asyncio --variant one-onnx-session:RETRIEVER_ONNX_SMALL_TOKENS=0

Every variant is a ``retriever serve`` of the same index on its own port, all started before the first request.
Then each SciFact test query goes to every server in turn (dense, then hybrid, then ``GET /health``), one
request in flight at a time, so that whatever else the machine runs weighs on every variant alike: their
ratios hold on a loaded machine where absolute numbers do not. A variant is ``NAME[:KEY=VALUE,...]``:
``RETRIEVER_*`` keys go to that server's environment, ``commit=SHA`` serves that commit's code (``git
archive`` into a temporary folder, same virtual environment), ``hide=MODULE`` makes ``import MODULE`` fail
in that server (e.g. uvloop, for a commit from before it was a dependency). Like ``bench.serve_load``, no
vectors are kept in memory and the disk cache starts empty, so every query is encoded. Recorded as
``serve-search-ab``.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import typer

from bench.results import ROOT, record
from bench.serve_load import free_port, start
from retriever.data import load_dataset

logger = logging.getLogger("bench.serve_ab")
MODES = ("dense", "hybrid")


def parse_variant(spec: str, scratch: Path) -> tuple[str, dict[str, str], Path]:
    """``(name, environment, source root)`` of one ``--variant``."""
    name, _, options = spec.partition(":")
    env, source = {}, ROOT
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        if key == "commit":
            source = scratch / f"src-{value}"
            source.mkdir(parents=True)
            archive = subprocess.run(["git", "archive", value], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
        elif key == "hide":
            stub = scratch / f"hide-{name}" / value
            stub.mkdir(parents=True)
            (stub / "__init__.py").write_text(f"raise ImportError('{value} hidden by bench.serve_ab')\n")
            env["_HIDE"] = str(stub.parent)
        elif key.startswith("RETRIEVER_"):
            env[key] = value
        else:
            raise typer.BadParameter(f"unknown key '{key}' in '{spec}'", param_hint="--variant")
    return name, env, source


def launch(name: str, env: dict[str, str], source: Path, index: Path, backend: str, cache: Path):
    port = free_port()
    path = [env.pop("_HIDE")] if "_HIDE" in env else []
    env = env | {"PYTHONPATH": os.pathsep.join(path + [str(source)]), "RETRIEVER_LOG_JSON": "false",
                 "RETRIEVER_CACHE_DIR": str(cache / name), "RETRIEVER_VECTOR_CACHE_SIZE": "0"}
    cmd = [sys.executable, "-m", "retriever", "serve", "--index", str(index), "--port", str(port),
           "--backend", backend]
    return start(cmd, f"http://127.0.0.1:{port}", "/ready", env=env), f"http://127.0.0.1:{port}"


def interleave(urls: dict[str, str], queries: list[str]) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = {}
    clients = {name: httpx.Client(base_url=url, timeout=60) for name, url in urls.items()}
    try:
        for i, query in enumerate([queries[0]] + queries):  # the first round warms every server up
            for name, client in clients.items():
                for mode in (*MODES, "health"):
                    start_s = time.perf_counter()
                    r = (client.get("/health") if mode == "health" else
                         client.post("/search", json={"query": query, "top_k": 10, "filter": "none", "mode": mode}))
                    ms = 1000 * (time.perf_counter() - start_s)
                    if r.status_code != 200:
                        raise RuntimeError(f"{name} {mode}: {r.status_code} {r.text[:200]}")
                    if i:
                        times.setdefault((name, mode), []).append(ms)
    finally:
        for client in clients.values():
            client.close()
    return times


def main(variant: list[str] = typer.Option(..., help="NAME[:KEY=VALUE,...] (see the module docstring)."),
         index: str = typer.Option("scifact-zero-shot"), dataset: str = typer.Option("scifact"),
         backend: str = typer.Option("onnx-int8"), queries: int = typer.Option(300)) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    texts = list(load_dataset(dataset).split_queries("test").values())[:queries]
    scratch = Path(tempfile.mkdtemp(prefix="serve-ab-"))
    servers, urls = [], {}
    try:
        for spec in variant:
            name, env, source = parse_variant(spec, scratch)
            server, urls[name] = launch(name, env, source, ROOT / "indexes" / index, backend, scratch / "cache")
            servers.append(server)
        load, started = os.getloadavg()[0], time.time()
        times = interleave(urls, texts)
        after = os.getloadavg()[0]
        for (name, mode), ms in times.items():
            metrics = {"requests": len(ms), "p50_ms": statistics.median(ms), "p90_ms": float(np.percentile(ms, 90)),
                       "p99_ms": float(np.percentile(ms, 99)), "load_avg_1m_before": load, "load_avg_1m_after": after}
            logger.info("%-18s %-6s p50 %7.2f  p90 %7.2f ms", name, mode, metrics["p50_ms"], metrics["p90_ms"])
            record(dataset, "test", "serve-search-ab", f"all-MiniLM-L6-v2 {backend} {name} {mode} c=1", metrics,
                   time.time() - started, speed=True)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
