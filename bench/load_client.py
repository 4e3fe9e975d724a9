"""The load generator of the serving benches: start a server and wait until it is ready (its log to a file,
never to an undrained pipe), and drive an endpoint with a bounded number of requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

logger = logging.getLogger(__name__)
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


async def drive(url: str, path: str, payloads: list[dict | None], concurrency: int, headers: dict | None = None,
                client: str = "httpx") -> dict:
    """Send every payload once (None: a GET) with at most ``concurrency`` in flight; latencies in ms.
    ``client``: httpx (pure Python, h11) or aiohttp (C parser), to see what the load generator costs."""
    send = _aiohttp_sender if client == "aiohttp" else _httpx_sender
    latencies: list[float] = []
    errors = 0
    semaphore = asyncio.Semaphore(concurrency)
    async with send(url, concurrency, headers) as post:
        async def one(payload: dict | None) -> None:
            nonlocal errors
            async with semaphore:
                start = time.perf_counter()
                try:
                    errors += await post(path, payload) != 200
                except (httpx.HTTPError, OSError, asyncio.TimeoutError):  # a failed request, not a crashed bench
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


@contextlib.asynccontextmanager
async def _httpx_sender(url: str, concurrency: int, headers: dict | None):
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency),
                                 headers=headers) as client:
        async def post(path: str, payload: dict | None) -> int:
            r = await (client.get(path) if payload is None else client.post(path, json=payload))
            return r.status_code

        yield post


@contextlib.asynccontextmanager
async def _aiohttp_sender(url: str, concurrency: int, headers: dict | None):
    import aiohttp  # not a dependency: only --client aiohttp needs it

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def post(path: str, payload: dict | None) -> int:
            request = session.get(path) if payload is None else session.post(path, json=payload)
            async with request as r:
                await r.read()
                return r.status

        yield post


def n_requests(concurrency: int, per_level: int) -> int:
    return max(per_level, 2 * concurrency)
