"""Fusion functions and the calibrated fusion against hand-computed values; monotonicity; where filters."""

import numpy as np
import pytest

from retriever.fusion import Candidates, convex, minmax, ranks, rrf
from retriever.hybrid_calibration import HybridCalibration, fit_hybrid, lexical_features
from retriever.where import FilterError, matches, to_milvus_expr, to_sql

NAN = np.nan
DENSE = np.array([[0.9, 0.5, NAN]])
LEXICAL = np.array([[NAN, 3.0, 5.0]])


def test_ranks_and_rrf_by_hand() -> None:
    np.testing.assert_array_equal(ranks(DENSE), [[1, 2, NAN]])
    np.testing.assert_array_equal(ranks(LEXICAL), [[NAN, 2, 1]])
    np.testing.assert_allclose(rrf(DENSE, LEXICAL), [[1 / 61, 2 / 62, 1 / 61]])
    np.testing.assert_allclose(rrf(DENSE, LEXICAL, k=1), [[1 / 2, 2 / 3, 1 / 2]])


def test_minmax_and_convex_by_hand() -> None:
    np.testing.assert_allclose(minmax(DENSE), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(minmax(LEXICAL), [[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(convex(DENSE, LEXICAL, 0.25), [[0.25, 0.0, 0.75]])
    # theoretical minima: cosine -1, BM25 0 -> dense [1, 1.5/1.9, 0], lexical [0, 0.6, 1]
    np.testing.assert_allclose(convex(DENSE, LEXICAL, 0.5, theoretical=True), [[0.5, (1.5 / 1.9 + 0.6) / 2, 0.5]])
    np.testing.assert_allclose(minmax(np.array([[2.0, 2.0]])), [[1.0, 1.0]])  # a constant row
    with pytest.raises(ValueError):
        convex(DENSE, LEXICAL, 1.5)


def test_candidates_union_keeps_order_and_marks_sides() -> None:
    c = Candidates.from_hits([[("a", 0.9), ("b", 0.5)], [("x", 0.1)]], [[("c", 5.0), ("b", 3.0)], []])
    assert c.ids == [["a", "b", "c"], ["x"]]
    np.testing.assert_array_equal(c.dense[0], DENSE[0])
    np.testing.assert_array_equal(c.lexical[0], LEXICAL[0])
    np.testing.assert_array_equal(c.pad, [[False, False, False], [False, True, True]])
    np.testing.assert_array_equal(c.in_lexical[1], [False, False, False])


def _softplus_inverse(w: float) -> float:
    return float(np.log(np.expm1(w)))


def test_calibrated_relevance_by_hand() -> None:
    cal = HybridCalibration([_softplus_inverse(1.0), _softplus_inverse(2.0), -60.0, -60.0], bias=-1.0)
    # p_dense 0.5 -> logit 0; BM25 2 of a query whose best is 4: ratio 0.5 -> z = 0 + 2 * 0.5 - 1 = 0
    rel = cal.relevance(np.array([[0.5, 0.5]]), np.array([[4.0, 2.0]]), np.array([2]))
    np.testing.assert_allclose(rel[0, 1], 0.5, atol=1e-6)
    np.testing.assert_allclose(rel[0, 0], 1 / (1 + np.exp(-1.0)), atol=1e-6)  # ratio 1 -> z = 1
    feats = lexical_features(np.array([[4.0, 0.0, NAN]]), np.array([4]))
    np.testing.assert_allclose(feats[0], [[1.0, 1.0, np.log(5.0)], [0, 0, 0], [0, 0, 0]])


def test_calibrated_relevance_is_monotone_in_each_score() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        cal = HybridCalibration(rng.normal(size=4).tolist(), float(rng.normal()))
        p = rng.uniform(0.01, 0.99, size=(1, 6))
        lex = rng.uniform(0, 10, size=(1, 6))
        base = cal.relevance(p, lex, np.array([3]))
        for j in range(6):
            up_p, up_l = p.copy(), lex.copy()
            up_p[0, j] = min(0.999, p[0, j] + 0.1)
            up_l[0, j] += 2.0
            assert cal.relevance(up_p, lex, np.array([3]))[0, j] >= base[0, j] - 1e-12
            assert cal.relevance(p, up_l, np.array([3]))[0, j] >= base[0, j] - 1e-12


def test_fit_hybrid_learns_that_lexical_evidence_matters() -> None:
    rng = np.random.default_rng(1)
    x = np.c_[rng.normal(size=2000), rng.uniform(size=2000), rng.uniform(size=2000), rng.uniform(size=2000)]
    y = (x[:, 1] + 0.1 * rng.normal(size=2000) > 0.7).astype(float)  # relevance follows the BM25 ratio only
    cal = fit_hybrid(x, y)
    weights = cal.effective_weights
    assert weights[1] > 5 * weights[0] and np.all(weights >= 0)


METADATA = [{"year": 2014, "tag": "a", "date": "2020-05-01"}, {"year": 2016, "tag": "b", "date": "2021-01-01"},
            {"year": 2019, "tag": "c"}, {"year": "2017", "tag": "a"}, {}, {"nested": {"x": 1}}]


def test_where_predicate_matches_hand_labels() -> None:
    where = {"year": {"gte": 2015, "lt": 2020}, "tag": {"in": ["a", "b", "c"]}}
    assert [matches(where, m) for m in METADATA] == [False, True, True, False, False, False]  # "2017" is text
    assert [matches({"date": {"gte": "2021-01-01"}}, m) for m in METADATA] == [False, True, False, False, False,
                                                                               False]
    assert [matches({"nested.x": 1}, m) for m in METADATA] == [False] * 5 + [True]
    sql, args = to_sql(where)
    assert sql.count("json_extract") == 3 and args == (2015, 2020, "a", "b", "c")
    assert to_milvus_expr({"tag": {"in": ["a", 2]}, "year": 3}) == (
        '(metadata["tag"] == "a" or metadata["tag"] == 2) and metadata["year"] == 3')


@pytest.mark.parametrize("bad", [{"year": {"near": 3}}, {"tag": {"in": []}}, {"x y": 1}, {"year": {"gte": None}},
                                 {"year": [1, 2]}, {"year": {}}])
def test_where_rejects_malformed_filters(bad) -> None:
    with pytest.raises(FilterError):
        to_sql(bad)


@pytest.mark.parametrize("fusion", ["rrf", "convex", "tmm", "calibrated"])
def test_fusing_no_candidates_gives_no_hits_not_an_error(fusion) -> None:
    from retriever.search import fuse

    empty = np.zeros((2, 0))
    fused = fuse(Candidates([[], []], empty, empty, np.zeros((2, 0), dtype=bool)), fusion)
    assert fused.shape == (2, 0)
