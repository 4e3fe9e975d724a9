"""schemathesis drives every operation of the published OpenAPI schema: no input may produce a 5xx."""

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from retriever.data import load_beir  # noqa: E402
from retriever.pipeline import build_index  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "tiny"


def _app(tmp: Path):
    from retriever.encoders import BiEncoder

    encoder = BiEncoder.load("default")
    _, _, path = build_index(load_beir(FIXTURE), encoder, "tiny", root=tmp, use_gpu=False)
    app = create_app(Settings(indexes=[str(path.parent)], index_dir=tmp, use_gpu=False, log_json=False,
                              max_batch=8, max_top_k=50, max_rerank_documents=20), load=False)
    app.state.runtime.load_all()  # schemathesis does not run the lifespan
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return _app(tmp_path_factory.mktemp("schema"))


def test_no_server_errors(app) -> None:
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        check()
    assert not failures, "\n".join(failures[:10])
    sent = sum(sample.value for metric in app.state.runtime.metrics.requests.collect() for sample in metric.samples
               if sample.name.endswith("_total"))
    assert sent >= 5 * len(operations)  # the cases really reached the app
