"""Calibrated fusion: one relevance probability in [0, 1] from a dense and a lexical score.

The dense side is mapped by the index's Cosine Adapter to ``p_dense``. BM25 scores are unbounded and grow
with the number of query terms, so the lexical side enters through three query-normalised features:
``s / max_q s`` (the share of the query's best BM25 score), ``s / n_terms`` and ``log(1 + s)``. Then

    relevance = sigmoid(w0 * logit(p_dense) + w1 * s/max + w2 * s/n_terms + w3 * log1p(s) + b),  w >= 0

(weights kept non-negative by softplus), fitted by binary cross-entropy on the training queries' fused
candidates. Non-negative weights on increasing features make the relevance monotone in each input score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

EPS = 1e-6
N_FEATURES = 4


def lexical_features(lexical: np.ndarray, n_terms: np.ndarray) -> np.ndarray:
    """``[n, m, 3]`` features of BM25 scores ``[n, m]`` (0 where the document matches no query term)."""
    s = np.nan_to_num(np.maximum(lexical, 0.0), nan=0.0)
    top = s.max(axis=1, keepdims=True) if s.size else np.zeros((len(s), 1))
    ratio = np.where(top > 0, s / np.where(top > 0, top, 1.0), 0.0)
    per_term = s / np.maximum(np.asarray(n_terms, dtype=float).reshape(-1, 1), 1.0)
    return np.stack([ratio, per_term, np.log1p(s)], axis=-1)


def features(dense_prob: np.ndarray, lexical: np.ndarray, n_terms: np.ndarray) -> np.ndarray:
    p = np.clip(np.nan_to_num(dense_prob, nan=EPS), EPS, 1 - EPS)
    return np.concatenate([np.log(p / (1 - p))[..., None], lexical_features(lexical, n_terms)], axis=-1)


@dataclass
class HybridCalibration:
    weights: list[float]  # raw parameters; the effective weights are softplus(weights)
    bias: float
    threshold: float | None = None
    info: dict = field(default_factory=dict)

    @property
    def effective_weights(self) -> np.ndarray:
        return np.logaddexp(0.0, np.asarray(self.weights, dtype=float))  # softplus

    def relevance(self, dense_prob: np.ndarray, lexical: np.ndarray, n_terms: np.ndarray) -> np.ndarray:
        z = features(dense_prob, lexical, n_terms) @ self.effective_weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return {"weights": list(map(float, self.weights)), "bias": float(self.bias), "threshold": self.threshold,
                **self.info}

    @classmethod
    def from_dict(cls, raw: dict) -> HybridCalibration:
        extra = {k: v for k, v in raw.items() if k not in ("weights", "bias", "threshold")}
        return cls(list(raw["weights"]), float(raw["bias"]), raw.get("threshold"), extra)


def fit_hybrid(x: np.ndarray, y: np.ndarray, steps: int = 500, learning_rate: float = 0.05,
               seed: int = 42) -> HybridCalibration:
    """Full-batch Adam on BCE over feature rows ``x [N, 4]`` and binary labels ``y [N]``."""
    torch.manual_seed(seed)
    features_t = torch.as_tensor(x, dtype=torch.float32)
    labels_t = torch.as_tensor(y, dtype=torch.float32)
    rate = float(np.clip(y.mean(), 1e-4, 1 - 1e-4)) if len(y) else 0.5
    raw = torch.zeros(N_FEATURES, requires_grad=True)
    bias = torch.tensor([float(np.log(rate / (1 - rate)))], requires_grad=True)
    optimizer = torch.optim.Adam([raw, bias], lr=learning_rate)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = features_t @ torch.nn.functional.softplus(raw) + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels_t)
        loss.backward()
        optimizer.step()
    return HybridCalibration(raw.detach().tolist(), float(bias.detach()), info={"train_bce": float(loss.detach()),
                                                                               "train_pairs": int(len(y))})
