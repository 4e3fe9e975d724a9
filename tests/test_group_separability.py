"""bench.group_separability's win rates and positive rank, against values counted by hand."""

from __future__ import annotations

import numpy as np

from bench.group_separability import separability
from training.rerank_data import EASY, HARD, POSITIVE


def test_win_rates_and_rank_count_each_negative_kind() -> None:
    kinds = np.array([POSITIVE, HARD, HARD, EASY, EASY])
    scores = np.array([[0.5, 0.9, 0.1, 0.2, 0.3],    # beats 1 of 2 hard, both easy: rank 2
                       [0.2, 0.3, 0.4, 0.1, 0.6]])   # beats no hard, 1 of 2 easy: rank 4
    out = separability(scores, kinds)
    assert out == {"win_vs_hard": 0.25, "win_vs_easy": 0.75, "positive_rank": 3.0, "n_groups": 2}
