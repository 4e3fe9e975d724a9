"""Issue 22: bad input, auth, limits, 500s and request ids, on the tiny index in process."""

import asyncio
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from retriever.data import load_beir
from retriever.pipeline import build_index
from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def built_index(minilm, tmp_path_factory) -> Path:
    from retriever.encoders import BiEncoder, EmbeddingCache, TextEncoder

    tmp = tmp_path_factory.mktemp("hardening")
    encoder = BiEncoder(TextEncoder(minilm, "sentence-transformers/all-MiniLM-L6-v2", EmbeddingCache(tmp / "c")))
    _, _, path = build_index(load_beir(Path(__file__).parent / "fixtures" / "tiny"), encoder, "tiny",
                             root=tmp / "indexes", use_gpu=False)
    return path.parent


@pytest.fixture
def tiny_index(built_index: Path, tmp_path: Path) -> Path:
    """A private copy of the built index, for tests with their own settings."""
    target = tmp_path / "indexes" / "tiny"
    shutil.copytree(built_index, target)
    return target


@pytest.fixture(scope="module")
def shared(built_index: Path):
    """One running app with default settings, for the tests that only read (or undo what they write)."""
    with client_for(built_index) as client:
        yield client


def client_for(index: Path, raise_server_exceptions: bool = True, **settings) -> TestClient:
    config = Settings(indexes=[str(index)], index_dir=index.parent, use_gpu=False, log_json=False, **settings)
    return TestClient(create_app(config), raise_server_exceptions=raise_server_exceptions)


def post_raw(client: TestClient, path: str, payload, **headers):
    """``json.dumps`` escapes a lone surrogate as ``\\ud800``, as a client in another language would send it."""
    return client.post(path, content=json.dumps(payload), headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize("payload", [
    ("/search", {"query": "\ud800"}),
    ("/search", {"queries": ["fine", "bad \udfff"]}),
    ("/documents", {"documents": [{"id": "x", "title": "\ud800", "text": "t"}]}),
    ("/documents", {"documents": [{"id": "x", "text": "a\ud800b"}]}),
    ("/documents", {"documents": [{"id": "\ud800", "text": "t"}]}),
])
def test_lone_surrogates_are_422_at_the_edge(shared: TestClient, payload) -> None:
    client = shared
    r = post_raw(client, *payload)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert ("lone surrogate" in detail or "unicode" in detail) and "Value error" not in detail


def test_a_failing_batch_member_fails_alone() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from service.batching import MicroBatcher

    calls: list[list[str]] = []

    def encode(items: list[str]) -> list[int]:
        calls.append(list(items))
        if "bad" in items:
            raise UnicodeEncodeError("utf-8", "bad", 0, 1, "surrogates not allowed")
        return [len(x) for x in items]

    async def scenario():
        batcher = MicroBatcher(encode, ThreadPoolExecutor(1), max_size=64, wait_ms=200)
        out = await asyncio.gather(batcher.submit(["a", "bb"]), batcher.submit(["bad"]), batcher.submit(["ccc"]),
                                   return_exceptions=True)
        await batcher.close()
        return out

    first, second, third = asyncio.run(scenario())
    assert calls[0] == ["a", "bb", "bad", "ccc"]  # really merged into one call first
    assert first == [1, 2] and third == [3]
    assert isinstance(second, UnicodeEncodeError)


def test_cache_keys_never_raise_and_keep_their_values() -> None:
    from retriever.encoders.cache import text_keys

    assert text_keys(["abc"]) == [hashlib.sha1(b"abc").digest()]
    keys = text_keys(["\ud800", "\udfff"])
    assert len(set(keys)) == 2


def test_non_ascii_authorization_is_401_and_a_non_ascii_key_works(tiny_index: Path) -> None:
    with client_for(tiny_index, api_key="clé-secrète") as client:
        bad = client.post("/search", json={"query": "x"}, headers={"Authorization": b"Bearer \xff\xfe"})
        assert bad.status_code == 401 and "API key" in bad.json()["detail"]
        good = client.post("/search", json={"query": "x"},
                           headers={"Authorization": "Bearer clé-secrète".encode()})
        assert good.status_code == 200, good.text
        assert client.get("/info", headers={"Authorization": b"Bearer cl\xe9"}).status_code == 401


def _chunks(data: bytes, size: int = 100):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_body_limit_counts_the_bytes_read(tiny_index: Path) -> None:
    body = json.dumps({"query": "x" * 1200}).encode()  # valid and under max_query_chars
    with client_for(tiny_index, max_body_bytes=1000) as client:
        r = client.post("/search", content=_chunks(body), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers  # chunked: only the bytes tell
        assert r.status_code == 413 and "RETRIEVER_MAX_BODY_BYTES" in r.json()["detail"]


def test_the_key_is_checked_before_the_body_is_parsed(tiny_index: Path) -> None:
    with client_for(tiny_index, api_key="k", max_body_bytes=1000) as client:
        r = client.post("/search", content=b'{"query": ', headers={"content-type": "application/json"})
        assert r.status_code == 401, r.text
        big = client.post("/search", content=_chunks(b"x" * 5000), headers={"content-type": "application/json"})
        assert big.status_code == 401
        assert client.post("/documents", content=_chunks(b"x" * 5000)).status_code == 401
        assert client.get("/documents/a/b").status_code == 401 and client.get("/metrics").status_code == 401
        assert client.get("/health").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_500s_are_counted_logged_and_carry_the_request_id(tiny_index: Path, caplog) -> None:
    with client_for(tiny_index, raise_server_exceptions=False) as client:
        async def broken(*args, **kwargs):
            raise RuntimeError("boom")

        client.app.state.runtime.search = broken
        with caplog.at_level(logging.INFO, logger="service"):
            r = client.post("/search", json={"query": "x"}, headers={"x-request-id": "req-42"})
        assert r.status_code == 500
        assert r.headers["x-request-id"] == "req-42" and r.json()["request_id"] == "req-42"
        assert "req-42" in r.json()["detail"] and "boom" not in r.json()["detail"]
        metrics = client.get("/metrics").text
        assert 'retriever_requests_total{method="POST",route="/search",status="500"} 1.0' in metrics
    lines = [rec for rec in caplog.records if rec.name == "service"]
    assert any(rec.getMessage() == "unhandled error" and rec.request_id == "req-42" for rec in lines)
    access = [rec for rec in lines if rec.getMessage() == "POST /search -> 500"]
    assert len(access) == 1 and access[0].request_id == "req-42"


def test_every_log_line_carries_its_own_request_id(tiny_index: Path, caplog) -> None:
    with client_for(tiny_index) as client, caplog.at_level(logging.INFO, logger="service"):
        for rid in ("one", "two"):
            assert client.post("/search", json={"query": "x"}, headers={"x-request-id": rid}).status_code == 200
        generated = client.get("/health").headers["x-request-id"]
    access = [(rec.getMessage(), rec.request_id) for rec in caplog.records if rec.name == "service"
              and "->" in rec.getMessage()]
    assert ("POST /search -> 200", "one") in access and ("POST /search -> 200", "two") in access
    assert ("GET /health -> 200", generated) in access and len(generated) == 16


def test_json_log_line_has_the_request_id() -> None:
    from service.logs import JsonFormatter, install_request_id_stamp, request_id

    install_request_id_stamp()
    token = request_id.set("abc")
    try:
        record = logging.getLogger("service").makeRecord("service", logging.INFO, "f", 1, "x", (), None)
    finally:
        request_id.reset(token)
    assert json.loads(JsonFormatter().format(record))["request_id"] == "abc"


def test_unknown_methods_share_one_metric_label(shared: TestClient) -> None:
    client = shared
    for method in ("FOO", "BAR", "PROPFIND"):
        assert client.request(method, "/search").status_code == 405
    metrics = client.get("/metrics").text
    assert 'method="other"' in metrics and "FOO" not in metrics and "PROPFIND" not in metrics
    assert client.request("FOO", "/search").json()["request_id"]


def test_total_hits_per_request_are_capped(tiny_index: Path) -> None:
    with client_for(tiny_index) as client:
        r = client.post("/search", json={"queries": ["q"] * 64, "top_k": 1000})
        assert r.status_code == 413 and "RETRIEVER_MAX_TOTAL_HITS" in r.json()["detail"]
        assert client.post("/search", json={"queries": ["q"] * 10, "top_k": 1000}).status_code == 200
    with client_for(tiny_index, max_total_hits=20) as client:
        assert client.post("/search", json={"queries": ["q"] * 3, "top_k": 7}).status_code == 413
        assert client.post("/search", json={"queries": ["q"] * 2, "top_k": 10}).status_code == 200
        reranked = client.post("/search", json={"queries": ["q"] * 2, "top_k": 1, "rerank": True,
                                                "rerank_depth": 11})
        assert reranked.status_code == 413 and "rerank" in reranked.json()["detail"]


def test_rerank_depth_limit_holds_without_rerank(shared: TestClient) -> None:
    r = shared.post("/search", json={"query": "x", "rerank_depth": 1001})  # the schema's maximum says so
    assert r.status_code == 422 and "RETRIEVER_MAX_RERANK_DOCUMENTS" in r.json()["detail"]


def test_document_ids_with_slashes_round_trip(shared: TestClient) -> None:
    client = shared
    doc = {"id": "wiki/Plate_tectonics/2", "title": "T", "text": "Continents drift on plates."}
    assert client.post("/documents", json={"documents": [doc]}).status_code == 200
    assert client.get("/documents/wiki/Plate_tectonics/2").json() == doc
    assert client.get("/documents/wiki%2FPlate_tectonics%2F2").json() == doc
    assert client.delete("/documents/wiki/Plate_tectonics/2").json()["deleted"] == doc["id"]
    assert client.get("/documents/wiki/Plate_tectonics/2").status_code == 404


@pytest.mark.parametrize(("payload", "field"), [
    ({"query": "x", "topk": 1}, "topk"),
    ({"query": "x", "top_k": True}, "top_k"),
    ({"query": "x", "top_k": 2.5}, "top_k"),
    ({"query": "x", "top_k": "3"}, "top_k"),
    ({"query": "x", "rerank": 1}, "rerank"),
    ({"query": "x", "return_text": "yes"}, "return_text"),
    ({"query": "x", "filter": {"min_relevance": True}}, "min_relevance"),
    ({"query": "x", "filter": {"min_relevance": 0.5, "max": 1}}, "max"),
    ({"query": None, "queries": ["x"]}, "query"),
    ({}, "exactly one"),
])
def test_request_models_are_strict(shared: TestClient, payload, field) -> None:
    client = shared
    r = client.post("/search", json=payload)
    assert r.status_code == 422 and field in r.json()["detail"], r.text
    doc = client.post("/documents", json={"documents": [{"id": "a", "text": "x", "body": "y"}]})
    assert doc.status_code == 422 and "body" in doc.json()["detail"]


def test_json_errors_are_one_clean_sentence(shared: TestClient) -> None:
    client = shared
    r = client.post("/search", content=b'{"query": ', headers={"content-type": "application/json"})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "character 10" in detail and "at at" not in detail
    assert r.json()["errors"][0]["type"] == "json_invalid"


def test_a_stalled_body_times_out_with_408() -> None:
    app = create_app(Settings(indexes=["x"], use_gpu=False, log_json=False, body_timeout_s=0.2), load=False)
    sent: list[dict] = []

    async def scenario():
        parts = [{"type": "http.request", "body": b'{"query": ', "more_body": True}]

        async def receive():
            if parts:
                return parts.pop()
            await asyncio.Event().wait()  # the client declared more than it sends

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/search", "raw_path": b"/search", "root_path": "",
                 "query_string": b"", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "http_version": "1.1",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")]}
        await asyncio.wait_for(app(scope, receive, send), 5)

    asyncio.run(scenario())
    assert sent[0]["status"] == 408
    assert b"RETRIEVER_BODY_TIMEOUT_S" in b"".join(m.get("body", b"") for m in sent[1:])


def test_serve_sets_uvicorn_timeouts(monkeypatch) -> None:
    import uvicorn

    from service import cli

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    cli.serve_command(index=["tiny"], reranker=None, host="127.0.0.1", port=8000, api_key=None,
                      fallback_to_previous=False, backend=None)
    assert seen["timeout_keep_alive"] == 5 and seen["h11_max_incomplete_event_size"] > 0


def test_one_failing_request_among_concurrent_searches(tiny_index: Path) -> None:
    """The issue's scene: 100 concurrent clean searches beside one whose encoding fails inside the batch."""
    import httpx

    from retriever.encoders import TextEncoder

    app = create_app(Settings(indexes=[str(tiny_index)], index_dir=tiny_index.parent, use_gpu=False,
                              log_json=False, batch_wait_ms=50))
    real = TextEncoder.encode_in_memory

    def encode(self, texts, *args, **kwargs):
        if any("poison" in t for t in texts):
            raise UnicodeEncodeError("utf-8", "poison", 0, 1, "surrogates not allowed")
        return real(self, texts, *args, **kwargs)

    async def scenario():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                       base_url="http://t") as client:
            queries = [f"query {i}" for i in range(100)] + ["poison"]
            return await asyncio.gather(*(client.post("/search", json={"query": q, "top_k": 1}) for q in queries))

    TextEncoder.encode_in_memory = encode
    try:
        responses = asyncio.run(scenario())
    finally:
        TextEncoder.encode_in_memory = real
    assert [r.status_code for r in responses[:100]] == [200] * 100
    assert responses[100].status_code == 500
    samples = {(s.name, s.labels["batcher"]): s.value for s in app.state.runtime.metrics.batch_size.collect()[0].samples
               if s.name.endswith(("_sum", "_count"))}
    calls, items = samples[("retriever_batch_size_count", "encode-query")], samples[("retriever_batch_size_sum",
                                                                                       "encode-query")]
    assert items == 101 and calls < 50  # the requests really were merged into shared batches
