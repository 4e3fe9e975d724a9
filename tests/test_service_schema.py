"""schemathesis drives every operation of the published OpenAPI schema, valid and invalid inputs, with all
of its checks: no 5xx, and the schema agrees with the service (statuses, bodies, content types, what is
accepted and what is refused)."""

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402

from retriever.data import load_beir  # noqa: E402
from retriever.filtering import calibrate  # noqa: E402
from retriever.pipeline import build_index  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "tiny"
EXAMPLES = 12  # per operation and mode: enough to cover each field, fast enough for every run
# A documented answer to a valid request: 404 (random index or document names), 413 (limits that span
# fields: queries x top_k, title + text). Refusing an invalid one: any of these 4xx.
CONFIG = {"checks": {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "409", "413"]},
    "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "409", "413", "422"]},
}}


def _app(tmp: Path, **overrides):
    from retriever.encoders import BiEncoder

    encoder = BiEncoder.load("default")
    index, manifest, path = build_index(load_beir(FIXTURE), encoder, "tiny", root=tmp, use_gpu=False)
    calibrate(index, manifest, encoder, load_beir(FIXTURE), k=5, save_to=path.parent)  # min_relevance works
    app = create_app(Settings(indexes=[str(path.parent)], index_dir=tmp, use_gpu=False, log_json=False,
                              max_batch=8, max_top_k=50, max_rerank_documents=20, **overrides), load=False)
    app.state.runtime.load_all()  # schemathesis does not run the lifespan
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return _app(tmp_path_factory.mktemp("schema"))


def _run(operation, mode: GenerationMode) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)
    def check(case) -> None:
        try:
            case.call_and_validate()
        except (Exception, FailureGroup) as exc:  # collect, so one run reports every operation that disagrees
            failures.append(f"{mode.value} {case.method} {case.formatted_path} {case.body!r:.120}: "
                            f"{str(exc).strip()[:400]}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (GET /health has no inputs)
        assert mode == GenerationMode.NEGATIVE
    return failures


def test_schema_and_service_agree(app) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _run(operation, mode)
    assert not failures, "\n".join(failures[:10])
    sent = sum(sample.value for metric in app.state.runtime.metrics.requests.collect() for sample in metric.samples
               if sample.name.endswith("_total"))
    assert sent >= 10 * len(operations)  # the cases really reached the app


def test_schema_says_what_the_service_does(tmp_path: Path) -> None:
    open_app = create_app(Settings(indexes=["x"], use_gpu=False, log_json=False, max_top_k=50), load=False)
    spec = open_app.openapi()
    assert "securitySchemes" not in spec.get("components", {})  # no key set: no Bearer declared
    error = spec["components"]["schemas"]["ValidationErrorResponse"]["properties"]["detail"]
    assert error["type"] == "string"
    search = spec["paths"]["/search"]["post"]
    assert search["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ValidationErrorResponse")
    request = spec["components"]["schemas"]["SearchRequest"]
    assert {"required": ["query"]} in request["oneOf"] and request["additionalProperties"] is False
    assert request["properties"]["top_k"]["maximum"] == 50
    assert "404" in spec["paths"]["/documents/{doc_id}"]["get"]["responses"]
    assert "404" in spec["paths"]["/documents/{doc_id}"]["delete"]["responses"]
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    keyed = create_app(Settings(indexes=["x"], use_gpu=False, log_json=False, api_key="k"), load=False).openapi()
    assert "HTTPBearer" in keyed["components"]["securitySchemes"]
    assert "401" in keyed["paths"]["/search"]["post"]["responses"]
    assert "security" not in keyed["paths"]["/health"]["get"]


def _response_model(operation: dict, status: str) -> str:
    return operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_each_path_documents_the_error_shape_of_its_api(app) -> None:
    spec = app.openapi()
    openai = spec["paths"]["/v1/embeddings"]["post"]
    assert "422" not in openai["responses"] and _response_model(openai, "400") == "OpenAIErrorResponse"
    assert _response_model(spec["paths"]["/v1/models/{model}"]["get"], "404") == "OpenAIErrorResponse"
    for path in ("/v1/embed", "/v2/embed", "/v1/rerank", "/v2/rerank"):
        cohere = spec["paths"][path]["post"]
        assert "422" not in cohere["responses"] and _response_model(cohere, "400") == "CohereErrorResponse"
    tei = spec["paths"]["/embed"]["post"]
    assert _response_model(tei, "422") == "TEIValidationErrorResponse"
    assert _response_model(tei, "413") == "TEIErrorResponse"
    assert _response_model(spec["paths"]["/search"]["post"], "404") == "ErrorResponse"
    assert spec["components"]["schemas"]["OpenAIErrorResponse"]["required"] == ["error"]


def test_schema_carries_the_served_models_limits(app) -> None:
    schemas = app.openapi()["components"]["schemas"]
    dimensions = next(b for b in schemas["OpenAIEmbeddingRequest"]["properties"]["dimensions"]["anyOf"]
                      if b.get("type") == "integer")
    assert dimensions["enum"] == [384]  # MiniLM, no Matryoshka sizes
    token_ids = schemas["OpenAIEmbeddingRequest"]["properties"]["input"]["anyOf"][2]["items"]
    assert token_ids == {"type": "integer", "minimum": 0, "maximum": 30521}  # MiniLM's 30,522 word pieces
    assert schemas["CohereEmbedV1Request"]["required"] == ["texts"]


def test_cohere_object_documents_need_text_unless_rank_fields_name_theirs(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(_app(tmp_path))  # its own: schemathesis closes the shared app's runtime
    r = client.post("/v1/rerank", json={"query": "q", "documents": [{"title": "t"}]})
    assert r.status_code == 400 and set(r.json()) == {"id", "message"}
    assert "documents[0] has no 'text' field" in r.json()["message"]
    ranked = client.post("/v1/rerank", json={"query": "q", "documents": [{"text": "a"}, {"body": "b"}],
                                             "rank_fields": ["title"]})
    assert ranked.status_code == 200  # neither has a title: both are ranked as empty texts, equally
    scores = [r["relevance_score"] for r in ranked.json()["results"]]
    assert scores[0] == pytest.approx(scores[1])
    assert client.post("/embed", json={"inputs": " "}).status_code == 422
    assert client.post("/v1/embeddings", json={"input": [101, 102]}).status_code == 200  # specials only: ""
