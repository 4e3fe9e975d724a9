"""The extension-point tables: vector-store backends and reranker architectures (detection, inference
class, trainable class), and what /info says of a causal-LM reranker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from retriever.data import load_beir
from retriever.errors import ModelError, RetrieverError
from retriever.index import FaissIndex, SearchResult, VectorStore
from retriever.index.backends import BACKENDS, backend_class, create_store
from retriever.pipeline import build_index
from retriever.rerank import reranker_arch
from retriever.rerank.registry import ARCHITECTURES, architecture, is_cross_encoder
from retriever.tables import UnknownNameError, table_entry, unknown_name_message


def test_backend_table_creates_and_refuses(tmp_path: Path) -> None:
    store = create_store(4, "Flat", "faiss", tmp_path / "idx", use_gpu=False)
    assert isinstance(store, FaissIndex) and isinstance(store, VectorStore)
    store.add(["a", "b"], np.eye(4, dtype=np.float32)[:2])
    hits = store.search(np.eye(4, dtype=np.float32)[1:2], 1)
    assert isinstance(hits, SearchResult) and hits.ids == [["b"]]
    assert backend_class("faiss") is FaissIndex and set(BACKENDS) == {"faiss", "milvus"}
    with pytest.raises(RetrieverError, match="unknown vector store backend 'qdrant': one of faiss, milvus"):
        create_store(4, backend="qdrant")
    with pytest.raises(RetrieverError, match="needs --uri or an index folder"):
        BACKENDS["milvus"].create_options(None, None, False)
    assert BACKENDS["milvus"].create_options(tmp_path / "9docs", None, False) == {
        "uri": str((tmp_path / "9docs").resolve() / "milvus.db"), "collection": "c_9docs"}


def _folder(tmp_path: Path, name: str, config: dict | None = None, settings: dict | None = None) -> str:
    folder = tmp_path / name
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if settings is not None:
        (folder / "reranker.json").write_text(json.dumps(settings))
    return str(folder)


def test_reranker_architecture_detection(tmp_path: Path) -> None:
    lm = _folder(tmp_path, "lm", {"architectures": ["LlamaForCausalLM"]})
    bert = _folder(tmp_path, "ce", {"architectures": ["BertForSequenceClassification"]})
    tagged = _folder(tmp_path, "tagged", {"architectures": ["LlamaForCausalLM"]}, {"arch": "cross-encoder"})
    assert [reranker_arch(p) for p in (lm, bert, tagged, "smollm2")] == [
        "causal-lm", "cross-encoder", "cross-encoder", "causal-lm"]
    assert [is_cross_encoder(p) for p in (lm, bert, None, "")] == [False, True, False, False]
    assert ARCHITECTURES["cross-encoder"].load_class().__name__ == "CrossEncoderReranker"
    with pytest.raises(UnknownNameError, match="unknown reranker architecture 'colbert'"):
        architecture("colbert")


def test_every_architecture_has_a_trainable_class() -> None:
    from training.rerank_models import SCORERS, make_scorer

    assert set(SCORERS) == set(ARCHITECTURES)
    assert all(cls.arch == name for name, cls in SCORERS.items())
    with pytest.raises(ModelError, match="no trainable reranker for architecture 'colbert'"):
        make_scorer("colbert", "x", 32)


def test_info_says_a_causal_lm_reranker_is_no_cross_encoder(tiny_dir: Path, encoder, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from service.app import create_app
    from service.settings import Settings

    class FakeLM:
        name = "causal-lm:tiny"

        def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
            return np.zeros(len(queries), dtype=np.float32)

    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    lm = _folder(tmp_path, "lm", {"architectures": ["Qwen2ForCausalLM"]})
    monkeypatch.setattr("service.runtime.load_reranker", lambda *args, **kwargs: FakeLM())
    settings = Settings(indexes=[str(path)], index_dir=path.parent, use_gpu=False, log_json=False, reranker=lm)
    with TestClient(create_app(settings)) as client:
        body = client.get("/info").json()
    assert body["reranker"] == "causal-lm:tiny" and body["reranker_is_cross_encoder"] is False


def test_table_entry_finds_and_refuses_by_name() -> None:
    table = {"a": 1, "b": 2}
    assert table_entry(table, "thing", "b") == 2
    with pytest.raises(UnknownNameError) as error:
        table_entry(table, "thing", "c")
    assert str(error.value) == "unknown thing 'c': one of a, b"
    assert isinstance(error.value, RetrieverError) and isinstance(error.value, ValueError)


def test_every_table_refuses_an_unknown_name_with_the_same_message() -> None:
    """Losses, reranker objectives and architectures, and vector-store backends all refuse through
    ``table_entry``: the same sentence, naming the table's entries in order."""
    from pydantic import ValidationError

    from retriever.index.backends import backend_entry
    from training.losses.registry import LOSSES, loss_spec
    from training.rerank_config import RerankerConfig
    from training.rerank_objectives import OBJECTIVES, objective

    lookups = [(loss_spec, LOSSES, "loss"), (objective, OBJECTIVES, "objective"),
               (backend_entry, BACKENDS, "vector store backend"),
               (architecture, ARCHITECTURES, "reranker architecture")]
    for lookup, table, kind in lookups:
        with pytest.raises(UnknownNameError) as error:
            lookup("nope")
        assert str(error.value) == unknown_name_message(table, kind, "nope") == \
            f"unknown {kind} 'nope': one of {', '.join(table)}"
    with pytest.raises(ValidationError) as invalid:
        RerankerConfig(arch="nope")
    assert invalid.value.errors()[0]["msg"].removeprefix("Value error, ") == \
        f"unknown reranker architecture 'nope': one of {', '.join(ARCHITECTURES)}"
