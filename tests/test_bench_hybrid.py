"""bench.hybrid's zero-shot index: refused, as the service refuses it, when it has no lexical side."""

from __future__ import annotations

import pytest
import typer

import bench.hybrid as hybrid
from retriever.data import load_beir
from retriever.docstore import STORE_FILE, DocumentStore
from retriever.pipeline import build_index


def test_zero_shot_refuses_an_index_without_lexical_side(tiny_dir, encoder, tmp_path, monkeypatch):
    """The service answers 409 for hybrid search on such an index; the bench stops with the same message (a bad
    --dataset) and fills nothing into the existing document store."""
    ds = load_beir(tiny_dir)
    build_index(ds, encoder, "tiny-zero-shot", root=tmp_path, use_gpu=False, lexical=False)
    old = DocumentStore(tmp_path / "tiny-zero-shot" / STORE_FILE, lexical=False)  # written before FTS existed
    old.upsert([("d0", "", "one document")])
    old.close()
    monkeypatch.setattr(hybrid, "INDEXES", tmp_path)
    monkeypatch.setattr(hybrid, "load_dataset", lambda name: ds)
    monkeypatch.setattr(hybrid, "ensure_train_dev", lambda dataset: (dataset, None))
    with pytest.raises(typer.BadParameter, match="index 'tiny-zero-shot' has no lexical side") as error:
        hybrid.zero_shot("tiny")
    assert error.value.param_hint == "--dataset"
    after = DocumentStore(tmp_path / "tiny-zero-shot" / STORE_FILE)  # None: keeps what is there
    assert not after.has_lexical and len(after) == 1


def test_zero_shot_opens_an_index_with_lexical_side(tiny_dir, encoder, tmp_path, monkeypatch):
    ds = load_beir(tiny_dir)
    build_index(ds, encoder, "tiny-zero-shot", root=tmp_path, use_gpu=False)
    monkeypatch.setattr(hybrid, "INDEXES", tmp_path)
    monkeypatch.setattr(hybrid, "load_dataset", lambda name: ds)
    monkeypatch.setattr(hybrid, "ensure_train_dev", lambda dataset: (dataset, None))
    *_, dataset, store = hybrid.zero_shot("tiny")
    assert dataset is ds and store.has_lexical and len(store) == len(ds.corpus) == 12
