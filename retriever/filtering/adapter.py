"""The Cosine Adapter of "Relevance Filtering for Embedding-based Retrieval" (Rossi et al., CIKM 2024,
arXiv 2408.04887).

A small network reads the query embedding and outputs the parameters of a monotone map from the raw cosine
``s`` to a relevance probability. With ``x = (s + 1) / 2`` in [0, 1] and slopes kept positive by softplus:

- ``linear``:    ``z = a x + b``
- ``sqrt``:      ``z = a sqrt(x) + b``
- ``quadratic``: ``z = a x^2 + c x + b``  (a, c > 0, so increasing on [0, 1])
- ``power``:     ``z = a x^p + b``        (0.05 <= p <= 10)

and ``relevance = sigmoid(z)``. Every map is increasing in ``s`` for any query, by construction, so the
adapter never reorders one query's results: it only makes scores comparable across queries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MAPPINGS = {"linear": 2, "sqrt": 2, "quadratic": 3, "power": 3}
MIN_POWER, MAX_POWER = 0.05, 10.0  # a bounded exponent keeps the map numerically increasing
SLOPE_SCALE = 10.0  # cosines of one query span ~0.1-0.3: useful slopes in x are tens, not ones


class CosineAdapter(nn.Module):
    def __init__(self, dimension: int, mapping: str = "power", hidden: int = 64) -> None:
        super().__init__()
        if mapping not in MAPPINGS:
            raise ValueError(f"unknown mapping '{mapping}' (choose from {', '.join(MAPPINGS)})")
        self.dimension, self.mapping, self.hidden = dimension, mapping, hidden
        self.net = nn.Sequential(nn.Linear(dimension, hidden), nn.GELU(), nn.Linear(hidden, MAPPINGS[mapping]))

    def start_at_base_rate(self, cosines: Tensor, positive_rate: float) -> None:
        """Start every query from the same map whose mean prediction is the training base rate.

        Without this the first steps only lower every prediction, pushing the slopes into softplus'
        flat region where they never recover (the fit then degenerates to a per-query constant).
        """
        last = self.net[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.zero_()
            mean_logit = self.logits(torch.zeros(1, self.dimension), cosines.reshape(1, -1)).mean()
            rate = min(max(positive_rate, 1e-6), 1 - 1e-6)
            last.bias[1] += float(torch.logit(torch.tensor(rate))) - float(mean_logit)

    def parameters_for(self, queries: Tensor) -> Tensor:
        return self.net(queries)

    def logits(self, queries: Tensor, cosines: Tensor) -> Tensor:
        """``queries [n, d]`` and ``cosines [n, m]`` (m candidates each) -> logits ``[n, m]``."""
        raw = self.parameters_for(queries)
        x = ((cosines + 1) / 2).clamp(0, 1)
        a = SLOPE_SCALE * nn.functional.softplus(raw[:, :1]) + 1e-3  # strictly positive slope
        b = raw[:, 1:2]
        if self.mapping == "linear":
            return a * x + b
        if self.mapping == "sqrt":
            return a * torch.sqrt(x + 1e-12) + b
        if self.mapping == "quadratic":
            return a * x**2 + SLOPE_SCALE * nn.functional.softplus(raw[:, 2:3]) * x + b
        power = MIN_POWER + (MAX_POWER - MIN_POWER) * torch.sigmoid(raw[:, 2:3])
        return a * (x + 1e-12) ** power + b

    def forward(self, queries: Tensor, cosines: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(queries, cosines))

    def config(self) -> dict:
        return {"dimension": self.dimension, "mapping": self.mapping, "hidden": self.hidden}
