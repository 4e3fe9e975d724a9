"""Listwise contrastive (InfoNCE) loss for rerankers: one positive against the query's negatives."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ListwiseContrastiveLoss(nn.Module):
    r"""Contrastive learning, listwise (arXiv 2510.14824): a softmax over one positive and ``n`` negatives of
    the same query.

    .. math::
        L = -\frac{1}{B} \sum_{b} \log \frac{e^{s_{b,0}/\tau}}{\sum_{j=0}^{n} e^{s_{b,j}/\tau}}

    with the positive in column 0. ``s`` is the cross-encoder logit, or ``l_yes - l_no`` for a causal LM.
    The gradient weights are ``1 - p_{b,0}`` for the positive and ``p_{b,j}`` for negative ``j``: coupled
    through the softmax, so many easy negatives shrink the weight of the hard ones.

    Inputs: ``scores`` ``[B, 1 + n]``, positive first.

    Example::

        loss = ListwiseContrastiveLoss(temperature=1.0)(out.scores)
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, scores: Tensor) -> Tensor:
        targets = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
        return nn.functional.cross_entropy(scores / self.temperature, targets)

    def gradient_weights(self, scores: Tensor) -> Tensor:
        """``|∂ℓ_b/∂(s_bj/τ)|``: ``1 - p_b0`` in column 0, ``p_bj`` elsewhere."""
        p = (scores.detach() / self.temperature).softmax(dim=-1)
        weights = p.clone()
        weights[:, 0] = 1 - p[:, 0]
        return weights

