"""The official OpenAI, Cohere, LangChain and LlamaIndex clients (and TEI's API) against a real server on
127.0.0.1, serving the tiny corpus twice: with MiniLM (``tiny``) and with a 32-dim model that declares
Matryoshka sizes 32/16/8 (``tiny-mrl``). Expected values are computed here from the models and the index."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from retriever.data import load_beir
from retriever.encoders import DEFAULT_MODEL_ID, BiEncoder, EmbeddingCache, TextEncoder
from retriever.pipeline import build_index
from service.app import create_app
from service.settings import Settings

FIXTURE = Path(__file__).parent / "fixtures" / "tiny"
RERANKER = "bi-encoder-cosine:sentence-transformers/all-MiniLM-L6-v2"
DOCS = ["Coffee beans are roasted seeds.", "Vaccines train the immune system.", "Volcanoes erupt lava."]


@dataclass
class Served:
    url: str
    minilm: object
    mrl: object
    index_dir: Path
    app: object


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, minilm, tiny_model_dir):
    root = tmp_path_factory.mktemp("clients")
    encoder = BiEncoder(TextEncoder(minilm, DEFAULT_MODEL_ID, EmbeddingCache(root / "cache")))
    build_index(load_beir(FIXTURE), encoder, "tiny", root=root / "indexes", use_gpu=False)
    mrl = root / "mrl-model"
    shutil.copytree(tiny_model_dir, mrl)
    (mrl / "matryoshka.json").write_text('{"dimensions": [32, 16, 8]}')
    mrl_encoder = BiEncoder.load(str(mrl), cache=EmbeddingCache(root / "cache"))
    build_index(load_beir(FIXTURE), mrl_encoder, "tiny-mrl", root=root / "indexes", use_gpu=False)
    app = create_app(Settings(indexes=["tiny", "tiny-mrl"], index_dir=root / "indexes", use_gpu=False,
                              log_json=False, torch_threads=1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield Served(f"http://127.0.0.1:{server.config.port}", minilm, mrl_encoder.document.model, root / "indexes", app)
    server.should_exit = True
    thread.join(30)


def unit(vectors) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def doc_vectors(model, texts: list[str]) -> np.ndarray:
    return model.encode_document(texts, normalize_embeddings=True, convert_to_numpy=True)


def token_count(model, texts: list[str]) -> int:
    return sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])


# ---- OpenAI ---------------------------------------------------------------------------------------------
def test_openai_sdk_embeddings_models_and_errors(served: Served) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    texts = ["Plate tectonics moves continents.", "Black holes trap light."]
    got = client.embeddings.create(model="tiny", input=texts)  # the SDK asks for base64 and decodes it
    expected = doc_vectors(served.minilm, texts)
    assert np.allclose([d.embedding for d in got.data], expected, atol=1e-5)
    assert got.usage.prompt_tokens == got.usage.total_tokens == token_count(served.minilm, texts)
    assert got.model == "tiny"
    floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, expected[0], atol=1e-5)

    ids = served.minilm.tokenizer.encode(texts[0], add_special_tokens=False)
    from_ids = client.embeddings.create(model="tiny", input=[ids])
    decoded = served.minilm.tokenizer.decode(ids, skip_special_tokens=True)
    assert np.allclose(from_ids.data[0].embedding, doc_vectors(served.minilm, [decoded])[0], atol=1e-5)

    full = doc_vectors(served.mrl, texts)
    short = client.embeddings.create(model="tiny-mrl", input=texts, dimensions=16)
    assert np.allclose([d.embedding for d in short.data], unit(full[:, :16]), atol=1e-5)

    assert [m.id for m in client.models.list().data] == ["tiny", "tiny-mrl"]
    assert client.models.retrieve("sentence-transformers/all-MiniLM-L6-v2").id == "tiny"

    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as no_mrl:
        client.embeddings.create(model="tiny", input="x", dimensions=16)
    assert "Matryoshka" in no_mrl.value.message and no_mrl.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError) as odd:
        client.embeddings.create(model="tiny-mrl", input="x", dimensions=12)
    assert "32, 16, 8" in odd.value.message
    with pytest.raises(openai.BadRequestError) as bad_id:
        client.embeddings.create(model="tiny", input=[[10**9]])
    assert bad_id.value.param == "input[0]"


def test_openai_error_shape_for_unknown_fields_and_lone_surrogates(served: Served) -> None:
    r = httpx.post(f"{served.url}/v1/embeddings", json={"input": "x", "model": "tiny", "temperature": 1})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == "temperature"
    r = httpx.post(f"{served.url}/v1/embeddings", content=b'{"input": "bad \\ud800 text"}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"]
    r = httpx.post(f"{served.url}/v1/chat/completions", json={})
    assert r.status_code == 404 and "error" in r.json()


def test_api_key_errors_reach_the_sdks_in_their_shape(served: Served) -> None:
    import cohere
    import openai
    from cohere.errors import UnauthorizedError

    settings = served.app.state.runtime.settings
    settings.api_key = "s3cret"  # read on every request
    try:
        with pytest.raises(openai.AuthenticationError) as denied:
            openai.OpenAI(base_url=f"{served.url}/v1", api_key="wrong", max_retries=0).models.list()
        assert denied.value.code == "invalid_api_key"
        ok = openai.OpenAI(base_url=f"{served.url}/v1", api_key="s3cret", max_retries=0).models.list()
        assert ok.data[0].id == "tiny"
        with pytest.raises(UnauthorizedError) as refused:
            cohere.ClientV2(api_key="wrong", base_url=served.url).rerank(model="all-MiniLM-L6-v2", query="x",
                                                                         documents=["y"])
        assert "API key" in refused.value.body["message"]
    finally:
        settings.api_key = None


def test_langchain_and_llamaindex_openai_embeddings(served: Served) -> None:
    from langchain_openai import OpenAIEmbeddings

    texts = ["Earthquakes happen at plate boundaries.", "Coffee contains caffeine."]
    expected = doc_vectors(served.minilm, texts)
    lc = OpenAIEmbeddings(model="tiny", base_url=f"{served.url}/v1", api_key="unused",
                          check_embedding_ctx_length=False, max_retries=0)
    assert np.allclose(lc.embed_documents(texts), expected, atol=1e-5)
    assert np.allclose(lc.embed_query(texts[0]), expected[0], atol=1e-5)
    before = _batches(served.url, "query")
    towers = OpenAIEmbeddings(model="tiny", base_url=f"{served.url}/v1", api_key="unused", max_retries=0,
                              check_embedding_ctx_length=False, model_kwargs={"extra_body": {"input_type": "query"}})
    assert np.allclose(towers.embed_query(texts[0]), expected[0], atol=1e-5)
    assert _batches(served.url, "query") == before + 1  # input_type: query picked the query tower

    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    li = OpenAILikeEmbedding(model_name="tiny", api_base=f"{served.url}/v1", api_key="unused", max_retries=0)
    assert np.allclose(li.get_text_embedding(texts[1]), expected[1], atol=1e-5)


# ---- Cohere ---------------------------------------------------------------------------------------------
def cosines(model, query: str, docs: list[str]) -> np.ndarray:
    q = model.encode_query([query], normalize_embeddings=True, convert_to_numpy=True)[0]
    return doc_vectors(model, docs) @ q


def test_cohere_rerank_v1_and_v2(served: Served) -> None:
    import cohere
    from cohere.errors import NotFoundError

    expected = cosines(served.minilm, "how do vaccines work", DOCS)
    order = list(np.argsort(-expected))
    v2 = cohere.ClientV2(api_key="unused", base_url=served.url)
    got = v2.rerank(model="all-MiniLM-L6-v2", query="how do vaccines work", documents=DOCS, top_n=2)
    assert [r.index for r in got.results] == order[:2]
    assert np.allclose([r.relevance_score for r in got.results], expected[order[:2]], atol=1e-5)
    assert got.id and got.meta.api_version.version == "2"

    v1 = cohere.Client(api_key="unused", base_url=served.url)
    got = v1.rerank(model=RERANKER, query="how do vaccines work", documents=DOCS, return_documents=True)
    assert [r.index for r in got.results] == order and got.results[0].document.text == DOCS[order[0]]

    with pytest.raises(NotFoundError) as missing:
        v2.rerank(model="rerank-v3.5", query="x", documents=["y"])
    assert "is not served" in missing.value.body["message"]
    r = httpx.post(f"{served.url}/v2/rerank", json={"query": "x", "documents": ["y"]})  # v2 requires model
    assert r.status_code == 400 and set(r.json()) == {"id", "message"} and "model" in r.json()["message"]


def test_cohere_rerank_max_tokens_per_doc_and_rank_fields(served: Served) -> None:
    long_doc = "vaccines train immunity " + "filler words about nothing " * 20
    cut = "vaccines train"  # the first 2 tokens of long_doc
    body = {"query": "vaccines", "documents": [long_doc, "volcano"], "max_tokens_per_doc": 2}
    got = httpx.post(f"{served.url}/v1/rerank", json=body).json()
    score = {r["index"]: r["relevance_score"] for r in got["results"]}
    assert score[0] == pytest.approx(float(cosines(served.minilm, "vaccines", [cut])[0]), abs=1e-5)
    fields = {"query": "vaccines", "rank_fields": ["title"], "return_documents": True,
              "documents": [{"title": "Volcano", "body": "x"}, {"title": "Vaccines", "body": "y"}]}
    got = httpx.post(f"{served.url}/rerank", json=fields).json()  # Cohere's body on /rerank: Cohere's response
    assert got["results"][0] == {"index": 1, "relevance_score": pytest.approx(
        float(cosines(served.minilm, "vaccines", ["title: Vaccines"])[0]), abs=1e-5),
        "document": {"title": "Vaccines", "body": "y"}}
    assert got["model"] == RERANKER and got["meta"]["api_version"]["version"] == "1"


def _batches(url: str, side: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    line = [x for x in text.splitlines() if x.startswith(f'retriever_batch_size_sum{{batcher="encode-{side}"}}')]
    return float(line[0].split()[-1]) if line else 0.0


def test_cohere_embed_types_and_towers(served: Served) -> None:
    import cohere

    from retriever.index import load_index

    v2 = cohere.ClientV2(api_key="unused", base_url=served.url)
    texts = ["Photosynthesis makes glucose.", "Mitochondria produce ATP."]
    before = _batches(served.url, "query")
    got = v2.embed(texts=texts, model="tiny", input_type="search_query",
                   embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"])
    assert _batches(served.url, "query") == before + 2  # search_query went through the query tower
    floats = np.array(got.embeddings.float_)
    assert np.allclose(floats, doc_vectors(served.minilm, texts), atol=1e-5)  # MiniLM: same vectors both towers
    index, _ = load_index(served.index_dir / "tiny", use_gpu=False)
    stored = index.cpu_index.reconstruct_batch(np.arange(len(index), dtype=np.int64))
    low, high = stored.min(axis=0), stored.max(axis=0)
    codes = np.clip(np.floor((floats - low) / ((high - low) / 255)), 0, 255)
    assert np.abs(np.array(got.embeddings.uint8) - codes).max() <= 1  # float32 rounding at a code boundary
    assert np.abs(np.array(got.embeddings.int8) - (codes - 128)).max() <= 1
    assert np.array_equal(got.embeddings.ubinary, np.packbits(floats > 0, axis=-1))
    assert np.array_equal(got.embeddings.binary, np.packbits(floats > 0, axis=-1).astype(np.int64) - 128)
    import base64

    assert np.allclose(np.frombuffer(base64.b64decode(got.embeddings.base64[0]), "<f4"), floats[0], atol=1e-6)
    assert got.meta.billed_units.input_tokens == token_count(served.minilm, texts)

    before = _batches(served.url, "document")
    v1 = cohere.Client(api_key="unused", base_url=served.url)
    plain = v1.embed(texts=texts, model="tiny-mrl", input_type="search_document")
    assert _batches(served.url, "document") == before + 2
    assert plain.response_type == "embeddings_floats"
    assert np.allclose(plain.embeddings, doc_vectors(served.mrl, texts), atol=1e-5)
    short = v2.embed(texts=texts, model="tiny-mrl", input_type="search_document", output_dimension=8,
                     embedding_types=["float"])
    assert np.allclose(short.embeddings.float_, unit(doc_vectors(served.mrl, texts)[:, :8]), atol=1e-5)


def test_langchain_cohere(served: Served) -> None:
    from langchain_cohere import CohereEmbeddings, CohereRerank

    rerank = CohereRerank(cohere_api_key="unused", base_url=served.url, model="all-MiniLM-L6-v2", top_n=1)
    best = rerank.rerank(DOCS, "volcanic eruptions")
    assert best[0]["index"] == int(np.argmax(cosines(served.minilm, "volcanic eruptions", DOCS)))
    embeddings = CohereEmbeddings(cohere_api_key="unused", base_url=served.url, model="tiny", max_retries=0)
    assert np.allclose(embeddings.embed_documents(DOCS[:2]), doc_vectors(served.minilm, DOCS[:2]), atol=1e-5)


# ---- TEI ------------------------------------------------------------------------------------------------
def test_tei_embed_rerank_and_info(served: Served) -> None:
    url = served.url
    got = httpx.post(f"{url}/embed", json={"inputs": ["Black holes", "Tides"], "index": "tiny-mrl",
                                           "normalize": False}).json()
    raw = served.mrl.encode_query(["Black holes", "Tides"], normalize_embeddings=False, convert_to_numpy=True)
    assert np.allclose(got, raw, atol=1e-5) and abs(np.linalg.norm(got[0]) - 1) > 1e-3  # not unit length
    one = httpx.post(f"{url}/embed", json={"inputs": "Black holes", "index": "tiny-mrl", "dimensions": 8}).json()
    assert np.allclose(one, unit(raw[:1, :8]), atol=1e-5)

    long_text = "word " * 300  # 300 tokens, MiniLM reads 254 of them
    r = httpx.post(f"{url}/embed", json={"inputs": long_text})
    assert r.status_code == 413 and r.json()["error_type"] == "Validation" and "truncate" in r.json()["error"]
    left = httpx.post(f"{url}/embed", json={"inputs": long_text + "volcano", "truncate": True,
                                            "truncation_direction": "Left"}).json()
    kept = served.minilm.encode_query([("word " * 253) + "volcano"], normalize_embeddings=True)
    assert np.allclose(left[0], kept[0], atol=1e-5)

    ranks = httpx.post(f"{url}/rerank", json={"query": "how do vaccines work", "texts": DOCS,
                                              "return_text": True}).json()
    expected = cosines(served.minilm, "how do vaccines work", DOCS)
    assert [r["index"] for r in ranks] == list(np.argsort(-expected))
    assert ranks[0] == {"index": int(np.argmax(expected)), "score": pytest.approx(float(expected.max()), abs=1e-5),
                        "text": DOCS[int(np.argmax(expected))]}

    over = httpx.post(f"{url}/rerank", json={"query": "vaccines", "texts": [long_text]})
    assert over.status_code == 413 and over.json()["error_type"] == "Validation"
    cut = httpx.post(f"{url}/rerank", json={"query": "vaccines", "texts": [long_text], "truncate": True}).json()
    assert cut[0]["score"] == pytest.approx(float(cosines(served.minilm, "vaccines", [("word " * 254).strip()])[0]),
                                            abs=1e-5)

    info = httpx.get(f"{url}/info").json()
    assert info["model_id"] == DEFAULT_MODEL_ID and info["max_input_length"] == 256
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["max_client_batch_size"] == 64
    assert "tiny" in info["indexes"]


def test_tei_client_huggingface_hub(served: Served, monkeypatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "is_offline_mode", lambda: False)  # it blocks loopback calls too
    client = hub.InferenceClient(base_url=served.url)
    got = client.feature_extraction("Plate tectonics")
    query = served.minilm.encode_query(["Plate tectonics"], normalize_embeddings=True)
    assert np.allclose(np.asarray(got).reshape(-1), query[0], atol=1e-5)


# ---- /docs offline ------------------------------------------------------------------------------------
def test_docs_page_and_assets_come_from_the_service(served: Served) -> None:
    page = httpx.get(f"{served.url}/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    for asset, kind in (("/docs/assets/swagger-ui-bundle.js", "javascript"), ("/docs/assets/swagger-ui.css", "css")):
        assert asset in page.text
        r = httpx.get(f"{served.url}{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 100_000
    assert httpx.get(f"{served.url}/docs/assets/..%2Fsecret").status_code == 404
    assert httpx.get(f"{served.url}/openapi.json").json()["openapi"].startswith("3.")


# ---- error shapes by path (no server needed) -------------------------------------------------------
@pytest.mark.parametrize(("path", "status", "expected_status", "keys"), [
    ("/v1/embeddings", 401, 401, {"error"}),
    ("/v1/models/x", 404, 404, {"error"}),
    ("/v1/embeddings", 422, 400, {"error"}),
    ("/v2/rerank", 422, 400, {"id", "message"}),
    ("/v1/rerank", 404, 404, {"id", "message"}),
    ("/v1/embed", 413, 413, {"id", "message"}),
    ("/embed", 413, 413, {"detail", "request_id", "error", "error_type"}),
    ("/search", 422, 422, {"detail", "request_id"}),
])
def test_error_body_has_the_shape_of_the_paths_api(path, status, expected_status, keys) -> None:
    from service.api_errors import error_body

    got_status, body = error_body(path, status, "boom")
    assert got_status == expected_status and set(body) == keys
    if "error" in keys and isinstance(body["error"], dict):
        assert body["error"]["message"] == "boom" and set(body["error"]) == {"message", "type", "param", "code"}
    if status == 401 and path.startswith("/v1/embeddings"):
        assert body["error"]["code"] == "invalid_api_key"
    if path == "/embed":
        assert body["error"] == "boom" and body["error_type"] == "Validation"
