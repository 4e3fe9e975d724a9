"""The shared types and helpers: the encoder text the embedding cache keys on, stage timings, staged folder
writes, the JSON-lines training log and the AUC."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from retriever.atomic import atomic_dir
from retriever.data import load_beir
from retriever.evaluate.auc import roc_auc
from retriever.timing import StageTimer
from retriever.types import doc_text
from training.run_log import append_log, fresh_log, read_log


def test_doc_text_is_byte_identical_to_what_the_cache_was_built_with() -> None:
    assert doc_text("Title", "Body text") == "Title Body text"
    assert doc_text("", "Body") == "Body"
    assert doc_text("Title", "") == "Title"
    assert doc_text(None, None) == ""
    assert doc_text("  padded ", " x  ") == "padded   x"  # inner spaces kept, only the ends stripped


def test_dataset_texts_go_through_doc_text(tiny_dir: Path) -> None:
    dataset = load_beir(tiny_dir)
    d = dataset.doc_ids[0]
    doc = dataset.corpus[d]
    assert dataset.doc_texts([d]) == [f"{doc['title']} {doc['text']}".strip()]


def test_stage_timer_accumulates_and_observes() -> None:
    seen: list[tuple[str, float]] = []
    timer = StageTimer(lambda name, seconds: seen.append((name, seconds)))
    for _ in range(2):
        with timer.stage("encode"):
            pass
    with pytest.raises(RuntimeError), timer.stage("fail"):
        raise RuntimeError("boom")
    assert set(timer.ms) == {"encode", "fail"} and [n for n, _ in seen] == ["encode", "encode", "fail"]
    assert timer.ms["encode"] == pytest.approx(1000 * (seen[0][1] + seen[1][1]), abs=2e-3)


def test_atomic_dir_replaces_whole_or_leaves_target(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("crash mid-save")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_dir(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_merge_keeps_other_items(tmp_path: Path) -> None:
    target = tmp_path / "run"
    (target / "checkpoints").mkdir(parents=True)
    (target / "weights").mkdir()
    (target / "weights" / "stale.bin").write_text("stale")
    with atomic_dir(target, merge=True) as staging:
        (staging / "weights").mkdir()
        (staging / "weights" / "fresh.bin").write_text("fresh")
        (staging / "config.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["checkpoints", "config.json", "weights"]
    assert [p.name for p in (target / "weights").iterdir()] == ["fresh.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_run_log_round_trip(tmp_path: Path) -> None:
    assert read_log(tmp_path / "none.jsonl") == []
    path = fresh_log(tmp_path / "out")
    append_log(path, {"step": 1, "loss": 0.5})
    append_log(path, {"step": 2, "loss": 0.25})
    assert read_log(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    assert fresh_log(tmp_path / "out") == path and read_log(path) == []


def test_roc_auc_counts_ties_half_and_is_nan_for_one_class() -> None:
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.9, 0.2, 0.1])  # pairs: (0.9 vs 0.9) tie, (0.9 > 0.1), (0.2 < 0.9), (0.2 > 0.1)
    assert roc_auc(labels, scores) == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert math.isnan(roc_auc(np.ones(3), np.arange(3.0)))
    assert math.isnan(roc_auc(np.zeros(3), np.arange(3.0)))


def test_subsampling_logs_pairs_not_queries(tiny_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from training.examples import build_rows

    dataset = load_beir(tiny_dir)
    qrels = dataset.qrels("train")
    n_pairs = sum(1 for docs in qrels.values() for rel in docs.values() if rel > 0)
    assert n_pairs > len(qrels)  # the tiny train split has a query with two positives
    with caplog.at_level("INFO", logger="training.examples"):
        rows = build_rows(dataset, "train", max_pairs=2)
    assert len(rows) == 2
    assert f"subsampled 2 of {n_pairs} training pairs" in caplog.text
