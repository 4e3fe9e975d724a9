"""First-stage specs of the reranker bench: parsing, labels, a clear error for a bad spec, and the refusal of a
hybrid list over an index without a lexical side."""

from __future__ import annotations

from pathlib import Path

import pytest

from retriever.data import load_beir
from retriever.docstore import STORE_FILE, DocumentStore
from retriever.errors import RetrieverError
from retriever.lexical import NoLexicalSideError
from retriever.pipeline import build_index
from retriever.rerank.first_stage import FirstStageSpec, first_stage_runs, lexical_store


def test_first_stage_specs_parse_and_label():
    dense = FirstStageSpec.parse("dense:indexes/scifact-zero-shot")
    assert dense == FirstStageSpec("dense", Path("indexes/scifact-zero-shot")) and dense.label == "scifact-zero-shot"
    hybrid = FirstStageSpec.parse("hybrid:calibrated:indexes/scifact-zero-shot:/work/models/scifact-adore")
    assert (hybrid.fusion, hybrid.dense_model) == ("calibrated", "/work/models/scifact-adore")
    assert hybrid.label == "scifact-hybrid-calibrated-adore"  # bench.hybrid's method name
    assert FirstStageSpec.parse("hybrid:tmm:indexes/nfcorpus-zero-shot").label == "nfcorpus-hybrid-tmm"
    for bad in ("hybrid:tmm", "sparse:x", "dense:"):
        with pytest.raises(RetrieverError, match="first stage"):
            FirstStageSpec.parse(bad)


def test_hybrid_first_stage_refuses_an_index_without_lexical_side(tiny_dir, encoder, tmp_path):
    """As the service answers 409 for lexical/hybrid search on such an index, the bench's hybrid first stage
    refuses it with the same error and message, and builds nothing into the index's document store."""
    ds = load_beir(tiny_dir)
    build_index(ds, encoder, "no-store", root=tmp_path, use_gpu=False, lexical=False)
    build_index(ds, encoder, "no-fts", root=tmp_path, use_gpu=False, lexical=False)
    old = DocumentStore(tmp_path / "no-fts" / STORE_FILE, lexical=False)  # a store written before FTS existed
    old.upsert((d, doc["title"], doc["text"]) for d, doc in ds.corpus.items())
    old.close()
    for name in ("no-store", "no-fts"):
        spec = FirstStageSpec("hybrid", tmp_path / name, "tmm")
        message = f"index '{name}' has no lexical side .* rebuild it with 'retriever index build'"
        for attempt in (spec.check, lambda spec=spec: first_stage_runs(spec, ds, {"test": ["q7"]})):
            with pytest.raises(NoLexicalSideError, match=message):
                attempt()
    after = DocumentStore(tmp_path / "no-fts" / STORE_FILE)  # None: keeps what is there
    assert not after.has_lexical and len(after) == 12
    assert not (tmp_path / "no-store" / STORE_FILE).exists()


def test_first_stage_check_passes_an_index_with_lexical_side(tiny_dir, encoder, tmp_path):
    ds = load_beir(tiny_dir)
    build_index(ds, encoder, "tiny", root=tmp_path, use_gpu=False)
    FirstStageSpec("hybrid", tmp_path / "tiny", "tmm").check()
    FirstStageSpec("dense", tmp_path / "tiny").check()
    store = lexical_store(tmp_path / "tiny")
    assert store.has_lexical and len(store) == 12
    with pytest.raises(RetrieverError, match="no index"):
        FirstStageSpec("dense", tmp_path / "missing").check()
