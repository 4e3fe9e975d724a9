"""The service as a real process on loopback: kill -9 during upserts, bounded load, reload under load."""

import asyncio
import sqlite3

import httpx

from tests.live_server import Server


async def _load(url: str, n: int, concurrency: int, payload: dict) -> list[int]:
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore:
                r = await client.post("/search", json=payload | {"query": f"{payload['query']} {i % 7}"})
                statuses.append(r.status_code)

        await asyncio.gather(*(one(i) for i in range(n)))
    return statuses


def test_bounded_load_has_no_errors_and_is_micro_batched(server: Server) -> None:
    statuses = asyncio.run(_load(server.url, 120, 16, {"query": "earthquakes and volcanoes", "top_k": 5}))
    assert statuses == [200] * 120
    metrics = httpx.get(f"{server.url}/metrics").text
    sums = [line for line in metrics.splitlines()
            if line.startswith('retriever_batch_size_sum{batcher="encode-query"}')]
    counts = [line for line in metrics.splitlines()
              if line.startswith('retriever_batch_size_count{batcher="encode-query"}')]
    items, calls = float(sums[0].split()[-1]), float(counts[0].split()[-1])
    assert items == 120 and calls < items  # concurrent queries shared model calls


def test_reload_under_load_fails_no_request(server: Server) -> None:
    async def scenario() -> list[int]:
        load = asyncio.create_task(_load(server.url, 150, 8, {"query": "coffee", "top_k": 3}))
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            for _ in range(3):
                await asyncio.sleep(0.2)
                assert (await client.post("/admin/reload", json={})).status_code == 200
        return await load

    assert asyncio.run(scenario()) == [200] * 150


def test_kill9_during_upserts_loses_no_acknowledged_document(server: Server) -> None:
    acknowledged: list[str] = []

    async def writer() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for batch in range(200):
                docs = [{"id": f"n{batch}-{j}", "title": f"note {batch}", "text": f"unique fact number {batch} {j}"}
                        for j in range(4)]
                try:
                    r = await client.post("/documents", json={"documents": docs})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acknowledged.extend(d["id"] for d in docs)

    async def killer() -> None:
        while len(acknowledged) < 12:
            await asyncio.sleep(0.05)
        server.kill9()

    async def both() -> None:
        await asyncio.gather(writer(), killer())

    asyncio.run(both())
    assert len(acknowledged) >= 12
    server.start()
    for doc_id in acknowledged:
        assert httpx.get(f"{server.url}/documents/{doc_id}").status_code == 200, doc_id
    info = httpx.get(f"{server.url}/info").json()["indexes"]["tiny"]
    stored = sqlite3.connect(server.index / "docs.sqlite").execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    assert info["documents"] == stored >= 12 + len(acknowledged)
    last = acknowledged[-1]
    hit = httpx.post(f"{server.url}/search", json={"query": f"unique fact number {last.split('-')[0][1:]} "
                                                           f"{last.split('-')[1]}", "top_k": 5}).json()
    assert last in [h["id"] for h in hit["results"][0]["hits"]]
