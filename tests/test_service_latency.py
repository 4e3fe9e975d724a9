"""Issue 18's latency fixes keep their shape: no route or dependency runs in FastAPI's thread pool (each would
cost a thread hop per request), and hybrid completion fills the same scores it did."""

from __future__ import annotations

import numpy as np

from retriever.fusion import Candidates
from retriever.search import _complete


def test_no_route_or_dependency_runs_in_the_thread_pool(monkeypatch) -> None:
    """FastAPI runs a plain ``def`` endpoint or dependency through anyio's worker threads: a thread hop and a
    GIL hand-off per request (1-5 ms on the loaded 2 cores, issue 18). Ours are all async, key check included."""
    import fastapi.dependencies.utils
    import fastapi.routing
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    hops: list[str] = []
    for module in (fastapi.dependencies.utils, fastapi.routing):
        real = module.run_in_threadpool

        async def counted(func, *args, real=real, **kwargs):
            hops.append(getattr(func, "__name__", repr(func)))
            return await real(func, *args, **kwargs)

        monkeypatch.setattr(module, "run_in_threadpool", counted)
    app = create_app(Settings(indexes=["x"], api_key="secret"), load=False)
    with TestClient(app) as client:
        auth = {"Authorization": "Bearer secret"}
        assert client.post("/search", json={"query": "q"}, headers=auth).status_code == 503  # not loaded: no index
        assert client.post("/embed", json={"inputs": ["q"]}, headers=auth).status_code == 503
        assert client.get("/health").status_code == 200
    assert hops == []


class _Index:
    """Stored vectors of three documents, as FaissIndex.vectors returns them."""

    stored = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.6, 0.8]}

    def vectors(self, ids: list[str]) -> np.ndarray:
        return np.array([self.stored[i] for i in ids], dtype=np.float32)


def test_completion_fills_missing_cosines_and_bm25_by_hand() -> None:
    # query 0: dense found a (0.9), lexical found b (2.0) and c (1.0); query 1: dense found c only
    c = Candidates.from_hits([[("a", 0.9)], [("c", 0.5)]], [[("b", 2.0), ("c", 1.0)], []])
    query = np.array([[0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    _complete(_Index(), query, c, [{"a": 0.5}, {}])
    assert c.ids == [["a", "b", "c"], ["c"]]
    np.testing.assert_allclose(c.dense[0], [0.9, 0.6, 0.96], rtol=1e-6)  # b: 0*0.8 + 1*0.6; c: .48 + .48
    np.testing.assert_allclose(c.lexical[0], [0.5, 2.0, 1.0])  # a's BM25 from the dense hits' pass
    assert c.dense[1, 0] == 0.5 and c.lexical[1, 0] == 0.0 and c.pad[1, 1:].all()  # no match: BM25 0
    assert np.isnan(c.dense[1, 1:]).all()  # padding stays untouched


def test_one_trip_dense_search_answers_as_the_two_hop_path(tiny_dir, encoder, tmp_path) -> None:
    """A lone dense search encodes on the index thread (one trip, no model-thread hop); its answer is the one
    the batched two-hop path gives, and hybrid, or a busy encoder or index thread, keeps the two hops."""
    from fastapi.testclient import TestClient

    from retriever.data import load_beir
    from retriever.pipeline import build_index
    from service.app import create_app
    from service.settings import Settings

    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    request = {"queries": ["what causes earthquakes", "coffee"], "top_k": 4, "mode": "dense"}
    bodies = {}
    for one_trip in (True, False):
        settings = Settings(indexes=[str(path.parent)], index_dir=path.parent.parent, use_gpu=False,
                            log_json=False, one_trip_search=one_trip, vector_cache_size=0)
        with TestClient(create_app(settings)) as client:
            runtime = client.app.state.runtime
            calls: list[str] = []
            submit = runtime.model_executor.submit
            runtime.model_executor.submit = (
                lambda fn, *a, calls=calls, submit=submit, **k: calls.append("model") or submit(fn, *a, **k))
            response = client.post("/search", json=request)
            assert response.status_code == 200, response.text
            assert bool(calls) is not one_trip  # the one-trip path never touched the model thread
            bodies[one_trip] = [r["hits"] for r in response.json()["results"]]
            live = runtime.get(None)
            assert runtime._one_trip(live, "dense") is one_trip and not runtime._one_trip(live, "hybrid")
            runtime._index_calls = 1  # a write or search on the index thread: keep the two hops
            assert not runtime._one_trip(live, "dense")
            runtime._index_calls = 0
    assert bodies[True] == bodies[False]


def test_batcher_is_idle_only_with_nothing_queued_or_running() -> None:
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from service.batching import MicroBatcher

    release = threading.Event()

    async def scenario() -> None:
        loop, started = asyncio.get_running_loop(), asyncio.Event()

        def slow(items):
            loop.call_soon_threadsafe(started.set)
            release.wait(5)
            return items

        batcher = MicroBatcher(slow, ThreadPoolExecutor(1))
        assert batcher.idle
        task = asyncio.create_task(batcher.submit(["a"]))
        await started.wait()
        assert not batcher.idle  # a call in flight
        release.set()
        assert await task == ["a"] and batcher.idle
        await batcher.close()

    asyncio.run(scenario())
