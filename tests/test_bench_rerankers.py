"""bench.rerankers' first-stage options: ``best`` resolves to the best trained retriever's index (as the
recorded commands of earlier rows say), and a bad list is refused before any training."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

import bench.rerank_eval as rerank_eval
from bench.rerankers import checked_first_stages


def _row(method: str, ndcg: float, hardware: str = "cpu x2", dataset: str = "scifact") -> dict:
    return {"dataset": dataset, "split": "test", "method": method, "model": "m", "hardware": hardware,
            "metrics": {"ndcg@10": ndcg, "auc_global": 0.9}}


def test_best_first_stage_is_the_best_trained_index_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("scifact-star", "scifact-adore-star"):
        (tmp_path / name).mkdir()
    rows = [_row("zero-shot", 0.9), _row("star", 0.70), _row("adore-star", 0.72), _row("mw-star", 0.8),
            _row("adore", 0.95, hardware="NVIDIA H200"), _row("adore-star", 0.99, dataset="nfcorpus")]
    monkeypatch.setattr(rerank_eval, "INDEXES", tmp_path)
    monkeypatch.setattr(rerank_eval, "load", lambda: rows)
    monkeypatch.setattr(rerank_eval, "hardware", lambda: "cpu x2")
    # zero-shot, another machine's row, another dataset and a row without an index here are passed over
    spec = rerank_eval.parse_first_stage("best", "scifact")
    assert (spec.kind, spec.index, spec.label) == ("dense", tmp_path / "scifact-adore-star", "scifact-adore-star")
    assert rerank_eval.parse_first_stage("scifact-star", "scifact").index == tmp_path / "scifact-star"
    monkeypatch.setattr(rerank_eval, "load", lambda: [_row("zero-shot", 0.9)])
    with pytest.raises(typer.BadParameter, match="no trained retriever of scifact"):
        rerank_eval.parse_first_stage("best", "scifact")


def test_a_missing_first_stage_index_is_a_bad_parameter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rerank_eval, "INDEXES", tmp_path)
    with pytest.raises(typer.BadParameter, match="no index") as error:
        checked_first_stages(["scifact-zero-shot"], "scifact")
    assert error.value.param_hint == "--first-stage"
    with pytest.raises(typer.BadParameter, match="use dense:INDEX or hybrid:FUSION:INDEX"):
        checked_first_stages(["hybrid:tmm"], "scifact")


def test_the_sft_positive_weight_reaches_the_trainer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bench.rerankers as rerankers

    seen = {}

    def fake_train(config):
        seen["config"] = config
        (config.output / "train_summary.json").write_text("{}")

    monkeypatch.setattr(rerankers, "train_reranker", fake_train)
    tmp_path.joinpath("out").mkdir()
    recipe = dict(n_hard=3, n_easy=4, max_groups=None, batch_size=8, epochs=1.0, learning_rate=1e-4, max_length=128,
                  seed=42, rows="pair", max_steps=-1, model=None, sft_pos_weight=7.0)
    rerankers.train_objective(None, "scifact", "cross-encoder", "sft", tmp_path / "out", tmp_path / "neg.json",
                              recipe)
    assert seen["config"].sft_pos_weight == 7.0 and seen["config"].objective == "sft"


def test_only_trained_rows_carry_the_runs_tag_and_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    names: dict[str, str] = {}

    class Qrels:
        def qrels(self, split):
            return {"q": {"d": 1}}

    class Fake:
        seconds, pairs_per_s = 0.0, 1.0

    monkeypatch.setattr(rerank_eval, "load_reranker", lambda *a, **k: Fake())
    monkeypatch.setattr(rerank_eval, "CachingReranker", lambda inner: Fake())
    monkeypatch.setattr(rerank_eval, "_prescore", lambda *a: None)
    monkeypatch.setattr(rerank_eval, "rerank_split", lambda *a: {})
    monkeypatch.setattr(rerank_eval, "_metrics", lambda *a: {})
    monkeypatch.setattr(rerank_eval, "save_run", lambda *a: None)
    monkeypatch.setattr(rerank_eval, "record", lambda dataset, split, method, name, *a: names.setdefault(method, name))
    settings = rerank_eval.EvalSettings(20, 160, 42, "640g", None, None, None, False, " (640 groups)")
    runs = {"list": {"test": {"q": {"d": 1.0}}}}
    for objective in ("none", "random", "cl"):
        rerank_eval.evaluate_reranker(Qrels(), "scifact", objective, "model", {"train_seconds": 0.0}, runs, "lm",
                                      settings)
    assert names == {"rerank-lm-none": "list>>lm-none", "rerank-random": "list>>random",
                     "rerank-lm-cl": "list>>lm-cl [640g] (640 groups)"}
