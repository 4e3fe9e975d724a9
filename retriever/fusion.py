"""Fusion of a dense and a lexical ranking into one, over a padded candidate matrix per batch.

Every function takes ``[n_queries, n_candidates]`` arrays where NaN marks "not retrieved by this side"
and returns fused scores of the same shape (higher is better; ``-inf`` for padding):

- :func:`rrf`: reciprocal rank fusion, ``sum 1 / (k + rank)`` (Cormack et al., 2009; k = 60).
- :func:`convex`: ``alpha * dense' + (1 - alpha) * lexical'`` of normalised scores (Bruch et al., "An Analysis
  of Fusion Functions for Hybrid Retrieval", TOIS 2023), with min-max or theoretical-min-max (``tmm``:
  cosine from -1, BM25 from 0, each divided by the query's max) normalisation; a side that did not retrieve a
  candidate contributes its minimum, 0.
- calibrated fusion lives in :mod:`retriever.hybrid_calibration` (it needs fitted parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FUSIONS = ("rrf", "convex", "tmm", "calibrated")
RRF_K = 60
DENSE_MIN, LEXICAL_MIN = -1.0, 0.0  # theoretical minima: cosine and BM25


@dataclass
class Candidates:
    """The union of both sides' hits for a batch of queries: ``ids[i][j]`` has ``dense[i, j]`` (cosine) and
    ``lexical[i, j]`` (BM25), NaN where that side did not score it; ``pad[i, j]`` marks empty slots."""

    ids: list[list[str]]
    dense: np.ndarray
    lexical: np.ndarray
    pad: np.ndarray
    in_dense: np.ndarray | None = None  # retrieved by that side itself (before any completion)
    in_lexical: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.in_dense is None:
            self.in_dense = ~np.isnan(self.dense)
        if self.in_lexical is None:
            self.in_lexical = ~np.isnan(self.lexical)

    @classmethod
    def from_hits(cls, dense: list[list[tuple[str, float]]], lexical: list[list[tuple[str, float]]]) -> Candidates:
        ids, rows_d, rows_l = [], [], []
        for dense_hits, lexical_hits in zip(dense, lexical, strict=True):
            d, lx = dict(dense_hits), dict(lexical_hits)
            union = list(dict.fromkeys([i for i, _ in dense_hits] + [i for i, _ in lexical_hits]))
            ids.append(union)
            rows_d.append([d.get(i, np.nan) for i in union])
            rows_l.append([lx.get(i, np.nan) for i in union])
        width = max((len(u) for u in ids), default=0)
        dense_arr = np.full((len(ids), width), np.nan)
        lexical_arr = np.full((len(ids), width), np.nan)
        pad = np.ones((len(ids), width), dtype=bool)
        for i, (rd, rl) in enumerate(zip(rows_d, rows_l, strict=True)):
            dense_arr[i, : len(rd)], lexical_arr[i, : len(rl)], pad[i, : len(rd)] = rd, rl, False
        return cls(ids, dense_arr, lexical_arr, pad)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score within its row, best first (ties by position); NaN stays NaN."""
    filled = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-filled, axis=1, kind="stable")
    out = np.empty_like(scores, dtype=float)
    np.put_along_axis(out, order, np.arange(1, scores.shape[1] + 1, dtype=float)[None, :].repeat(len(scores), 0),
                      axis=1)
    return np.where(np.isnan(scores), np.nan, out)


def rrf(dense: np.ndarray, lexical: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """``1/(k + rank_dense) + 1/(k + rank_lexical)``; a side that missed a candidate adds 0."""
    return np.nan_to_num(1.0 / (k + ranks(dense)), nan=0.0) + np.nan_to_num(1.0 / (k + ranks(lexical)), nan=0.0)


def minmax(scores: np.ndarray, floor: float | None = None) -> np.ndarray:
    """Per row ``(s - lo) / (hi - lo)`` with ``lo`` the row's min (or ``floor``, the theoretical min); a
    constant row maps to 1; NaN (not retrieved) maps to 0."""
    with np.errstate(all="ignore"):
        hi = np.nanmax(scores, axis=1, keepdims=True)
        lo = np.nanmin(scores, axis=1, keepdims=True) if floor is None else np.full_like(hi, floor)
        span = hi - lo
        out = np.where(span > 0, (scores - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.nan_to_num(np.where(np.isnan(scores), 0.0, out), nan=0.0)


def convex(dense: np.ndarray, lexical: np.ndarray, alpha: float, theoretical: bool = False) -> np.ndarray:
    """``alpha * norm(dense) + (1 - alpha) * norm(lexical)``; ``theoretical`` uses the fixed minima."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    d = minmax(dense, DENSE_MIN if theoretical else None)
    lx = minmax(lexical, LEXICAL_MIN if theoretical else None)
    return alpha * d + (1 - alpha) * lx


def top_k(candidates: Candidates, fused: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` best ``(id, fused score)`` per query, ties broken by candidate order."""
    fused = np.where(candidates.pad, -np.inf, fused)
    order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
    return [[(candidates.ids[i][j], float(fused[i, j])) for j in row if not candidates.pad[i, j]]
            for i, row in enumerate(order)]
