"""Reranker / first-stage score interpolation: per-query z-scores, the mix, runs and the dev-tuned weight."""

from __future__ import annotations

import numpy as np
import pytest

from retriever.rerank.interpolate import interpolate, interpolate_runs, pick_weight, zscore

Z = 1.5 ** 0.5  # z-score of the ends of [1, 2, 3]: (3 - 2) / sqrt(2 / 3)


def test_zscore_per_row_with_padding_and_constant_rows():
    scores = np.array([[1.0, 2.0, 3.0], [4.0, 8.0, 99.0], [5.0, 5.0, 5.0]])
    valid = np.array([[True, True, True], [True, True, False], [True, True, True]])
    z = zscore(scores, valid)
    np.testing.assert_allclose(z[0], [-Z, 0.0, Z])
    np.testing.assert_allclose(z[1], [-1.0, 1.0, 0.0])  # mean 6, std 2 over the two valid entries
    np.testing.assert_allclose(z[2], [0.0, 0.0, 0.0])


def test_interpolate_matches_hand_computation():
    reranker = np.array([[1.0, 2.0, 3.0]])
    first = np.array([[0.9, 0.5, 0.1]])  # z = [Z, 0, -Z]
    np.testing.assert_allclose(interpolate(reranker, first, 0.25), [[0.5 * Z, 0.0, -0.5 * Z]])
    np.testing.assert_allclose(interpolate(reranker, first, 0.75), [[-0.5 * Z, 0.0, 0.5 * Z]])
    np.testing.assert_allclose(interpolate(reranker, first, 1.0), [[-Z, 0.0, Z]])
    padded = interpolate(np.array([[4.0, 8.0, 0.0]]), np.array([[1.0, 3.0, 0.0]]), 0.5,
                         np.array([[True, True, False]]))
    np.testing.assert_allclose(padded, [[-1.0, 1.0, -np.inf]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate(reranker, first, 1.5)


FIRST = {"q1": {"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.05}}
RERANKED = {"q1": {"a": 1.0, "b": 2.0, "c": 3.0, "d": 0.0}}  # d is below depth 3: not reranked


def test_interpolate_runs_keeps_every_candidate_and_the_tail_below():
    run = interpolate_runs(RERANKED, FIRST, 0.75, depth=3)["q1"]
    assert run == pytest.approx({"a": -0.5 * Z, "b": 0.0, "c": 0.5 * Z, "d": -0.5 * Z - 1.0})
    first_order = interpolate_runs(RERANKED, FIRST, 0.0, depth=3)["q1"]
    assert sorted(first_order, key=first_order.get, reverse=True) == ["a", "b", "c", "d"]


def test_pick_weight_on_dev_prefers_the_larger_weight_on_ties():
    qrels = {"q1": {"c": 1}}  # the reranker puts c first (weights > 0.5); the first stage third (< 0.5)
    best, by_weight = pick_weight(qrels, RERANKED, FIRST, depth=3)
    assert best == 1.0
    assert by_weight[1.0] == pytest.approx(1.0) and by_weight[0.6] == pytest.approx(1.0)
    assert by_weight[0.0] == pytest.approx(1 / np.log2(4)) and by_weight[0.4] == pytest.approx(0.5)


def test_caching_reranker_scores_each_distinct_pair_once():
    from retriever.rerank.caching import CachingReranker

    class Counting:
        calls: list[int] = []

        def score_pairs(self, queries, documents):
            self.calls.append(len(queries))
            return np.array([len(q) + 10 * len(d) for q, d in zip(queries, documents, strict=True)], dtype=float)

    inner = Counting()
    cached = CachingReranker(inner, chunk=2)
    np.testing.assert_allclose(cached.score_pairs(["q", "q", "qq"], ["d", "d", "dd"]), [11, 11, 22])
    np.testing.assert_allclose(cached.score_pairs(["qq", "q", "q"], ["dd", "ddd", "d"]), [22, 31, 11])
    assert inner.calls == [2, 1] and cached.pairs_scored == 3  # (q, d), (qq, dd); then (q, ddd) only
