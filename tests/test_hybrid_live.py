"""The lexical side under kill -9: every acknowledged upsert is found by its rare term, no acknowledged delete
comes back (a real server process on loopback, as in test_service_live)."""

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.live_server import Server


def rare(batch: int, j: int) -> str:
    return f"zq{batch:03d}x{j}"  # one token, in no other document


def test_kill9_during_upserts_and_deletes_keeps_the_lexical_side(server: Server) -> None:
    upsert_delete_kill9_restart(server)


@pytest.fixture
def milvus_server(tiny_dir: Path, encoder, tmp_path: Path):
    """The same server over a ``--store milvus`` index: its lexical side is Milvus' BM25 (issue 19)."""
    pytest.importorskip("milvus_lite")
    from retriever.data import load_beir
    from retriever.pipeline import build_index

    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False,
                             backend="milvus")
    from tests.conftest import _stop_milvus_lite

    _stop_milvus_lite()  # the server process opens milvus.db itself
    server = Server(path.parent, tmp_path / "cache")
    server.start()
    yield server
    server.stop()


def test_kill9_keeps_the_milvus_bm25_side(milvus_server: Server) -> None:
    upsert_delete_kill9_restart(milvus_server)


def upsert_delete_kill9_restart(server: Server) -> None:
    acknowledged: list[tuple[str, str]] = []
    deleted: list[str] = []

    async def writer() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for batch in range(200):
                docs = [{"id": f"n{batch}-{j}", "title": "note", "text": f"a note with the code {rare(batch, j)}",
                         "metadata": {"batch": batch}} for j in range(3)]
                try:
                    r = await client.post("/documents", json={"documents": docs})
                    if r.status_code == 200:
                        acknowledged.extend((d["id"], rare(batch, j)) for j, d in enumerate(docs))
                    if batch % 2 and (await client.delete(f"/documents/n{batch - 1}-0")).status_code == 200:
                        deleted.append(f"n{batch - 1}-0")
                except httpx.TransportError:
                    return

    async def killer() -> None:
        while len(deleted) < 3:
            await asyncio.sleep(0.05)
        server.kill9()

    async def both() -> None:
        await asyncio.gather(writer(), killer())

    asyncio.run(both())
    server.start()
    assert len(acknowledged) >= 6
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for doc_id, term in acknowledged:
            body = client.post("/search", json={"query": term, "mode": "lexical", "top_k": 3}).json()
            ids = [h["id"] for h in body["results"][0]["hits"]]
            assert body["mode"] == "lexical"
            assert ids == ([] if doc_id in deleted else [doc_id]), (doc_id, term, ids)
        batch = int(acknowledged[-1][0].split("-")[0][1:])
        body = client.post("/search", json={"query": "note code", "mode": "lexical", "top_k": 50,
                                            "where": {"batch": batch}}).json()
        assert {h["id"] for h in body["results"][0]["hits"]} == {d for d, _ in acknowledged
                                                                 if d.startswith(f"n{batch}-") and d not in deleted}
