"""bench.hybrid_tune's extra normalisers and the three-way fusion, against hand-computed values."""

import numpy as np
import pytest

from bench.hybrid_tune import fused_scores, grid, second_tower, zscore
from retriever.fusion import Candidates
from retriever.hybrid_fit import LabelledCandidates


def test_zscore_gives_unretrieved_candidates_the_row_minimum() -> None:
    z = zscore(np.array([[1.0, 2.0, 3.0, np.nan], [5.0, 5.0, np.nan, np.nan]]))
    s = np.sqrt(2 / 3)  # population std of 1, 2, 3
    assert z[0] == pytest.approx([-1 / s, 0.0, 1 / s, -1 / s])
    assert z[1] == pytest.approx([0.0, 0.0, 0.0, 0.0])  # constant row: no spread, all 0


def test_three_way_fusion_weights_each_tower_and_bm25() -> None:
    c = Candidates([["a", "b"]], np.array([[0.5, 0.0]]), np.array([[0.0, 4.0]]), np.zeros((1, 2), dtype=bool))
    lc = LabelledCandidates(["q"], ["query"], np.zeros((1, 2)), c, np.zeros((1, 2), dtype=bool))
    second = np.array([[-1.0, 1.0]])
    fused = fused_scores(lc, "tmm3", (0.5, 0.3), None, second)
    # tmm: cosine from -1 over the row max, BM25 from 0: trained (1, 2/3), zero-shot (0, 1), BM25 (0, 1)
    assert fused[0] == pytest.approx([0.5 * 1 + 0.3 * 0 + 0.2 * 0, 0.5 * (1 / 1.5) + 0.3 * 1 + 0.2 * 1])
    assert ("tmm3", (0.5, 0.3)) in grid([60], three_way=True) and ("tmm3", (0.5, 0.3)) not in grid([60], False)


class _ZeroShotIndex:
    """Another index's stored vectors, looked up by document id (as a full model's candidates are)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self._vectors = vectors

    def vectors(self, doc_ids: list[str]) -> np.ndarray:
        return np.array([self._vectors[d] for d in doc_ids], dtype=np.float32)


class _ZeroShotEncoder:
    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0]] * len(texts), dtype=np.float32)


def test_second_tower_scores_a_full_models_candidates_with_the_zero_shot_index_vectors() -> None:
    c = Candidates([["b", "a"], ["c"]], np.array([[0.9, 0.8], [0.7, np.nan]]), np.zeros((2, 2)),
                   np.array([[False, False], [False, True]]))
    lc = LabelledCandidates(["q1", "q2"], ["one", "two"], np.zeros((2, 2)), c, np.zeros((2, 2), dtype=bool))
    tower = (_ZeroShotIndex({"a": [0.5, 0.5], "b": [-0.2, 1.0], "c": [0.3, 0.0]}), _ZeroShotEncoder())
    second = second_tower(lc, tower)
    assert second[0] == pytest.approx([-0.2, 0.5])  # by id, in the candidates' order, not the index's
    assert second[1, 0] == pytest.approx(0.3) and np.isnan(second[1, 1])  # padding stays unscored
    assert second_tower(lc, None) is None
