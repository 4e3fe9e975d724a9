import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from retriever.evaluate import evaluate_run, read_trec_run, retrieval_auc, write_trec_run


def test_ranx_metrics_match_hand_computation() -> None:
    qrels = {"q1": {"a": 1, "c": 1}, "q2": {"z": 1}}
    run = {"q1": {"a": 0.9, "b": 0.8, "c": 0.7}, "q2": {"x": 0.5, "y": 0.4}}
    metrics = evaluate_run(qrels, run)
    idcg = 1 + 1 / math.log2(3)
    ndcg_q1 = (1 + 1 / math.log2(4)) / idcg
    assert metrics["ndcg@10"] == pytest.approx(ndcg_q1 / 2)
    assert metrics["mrr@10"] == pytest.approx(0.5)
    assert metrics["recall@100"] == pytest.approx(0.5)
    assert metrics["map@100"] == pytest.approx((1 + 2 / 3) / 2 / 2)


def test_query_with_empty_run_counts_as_zero() -> None:
    metrics = evaluate_run({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": {"a": 1.0}})
    assert metrics["ndcg@10"] == pytest.approx(0.5)


def test_auc_protocol_pools_positives_with_top_negatives() -> None:
    qrels = {"q1": {"p1": 1}, "q2": {"p2": 1}}
    run = {"q1": {"n1": 0.9, "p1": 0.8, "n2": 0.1}, "q2": {"n3": 0.3, "n4": 0.2}}
    positives = {"q1": {"p1": 0.8}, "q2": {"p2": 0.25}}  # p2 not retrieved: scored directly
    result = retrieval_auc(qrels, run, positives, n_neg=2)
    labels = np.array([1, 0, 0, 1, 0, 0])
    scores = np.array([0.8, 0.9, 0.1, 0.25, 0.3, 0.2])
    assert result.auc_global == pytest.approx(roc_auc_score(labels, scores))
    assert result.auc_per_query == pytest.approx((0.5 + 0.5) / 2)
    assert retrieval_auc(qrels, run, positives, n_neg=1).labels.tolist() == [1, 0, 1, 0]


def test_auc_is_global_not_per_query() -> None:
    # Each query ranks perfectly (per-query AUC 1) but scores are not comparable across queries.
    qrels = {"q1": {"p1": 1}, "q2": {"p2": 1}}
    run = {"q1": {"p1": 0.9, "n1": 0.8}, "q2": {"p2": 0.3, "n2": 0.2}}
    result = retrieval_auc(qrels, run, {"q1": {"p1": 0.9}, "q2": {"p2": 0.3}})
    assert result.auc_per_query == 1.0 and result.auc_global == pytest.approx(0.75)


def test_trec_run_round_trip(tmp_path) -> None:
    run = {"q1": {"a": 0.5, "b": 0.9}, "q2": {"c": 0.1}}
    write_trec_run(run, tmp_path / "run.trec", tag="t")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 0.900000 t"
    assert read_trec_run(tmp_path / "run.trec") == run
