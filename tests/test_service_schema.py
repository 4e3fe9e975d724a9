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
# The client-compatible routes (TEI, OpenAI, Cohere) answer in their own APIs' shapes: no 5xx only, for now.
ALL_CHECKS_EXCEPT = ("/", "/embed", "/rerank", "/v1/embeddings", "/v1/models", "/v1/models/{model}", "/v1/embed",
                     "/v2/embed", "/v1/rerank", "/v2/rerank")


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


def _run(operation, mode: GenerationMode, all_checks: bool) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)
    def check(case) -> None:
        try:
            if all_checks:
                case.call_and_validate()
            else:
                response = case.call()
                assert response.status_code < 500, response.text[:200]
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
        strict = operation.path not in ALL_CHECKS_EXCEPT
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _run(operation, mode, strict)
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
