"""CET: the Coupled Estimation Technique against pooling bias (false negatives)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def cet_weights(other_negative_scores: Tensor, debias_ratio: float) -> Tensor:
    """``w = 1 / (1 - σ(s_other(q, d⁻) / T))``, computed without gradient from the *other* model's scores."""
    with torch.no_grad():
        return 1.0 / (1.0 - torch.sigmoid(other_negative_scores.detach().float() / debias_ratio)).clamp(min=1e-6)


def weights_on_hard(other_negative_scores: Tensor, debias_ratio: float, hard: Tensor | None) -> Tensor:
    """CET weights on the mined hard negatives (``hard``, bool like the scores; all when None), 1 elsewhere:
    the official code weighs only its mined (ANCE top-ranked) negatives."""
    weights = cet_weights(other_negative_scores, debias_ratio)
    return weights if hard is None else torch.where(hard, weights, torch.ones_like(weights))


def pair_losses(scores: Tensor) -> Tensor:
    """Two-way softmax cross-entropy of each (positive, negative_j) pair: ``softplus(s_j - s_0)``, ``[B, n]``."""
    return nn.functional.softplus(scores[:, 1:] - scores[:, :1])


class CETPairLoss(nn.Module):
    r"""Pairwise loss with CET weights (Cai et al., "Hard Negatives or False Negatives: Correcting Pooling Bias
    in Training Neural Ranking Models", CIKM 2022).

    Two models are trained together: the relevance model R and the selection model S. For a query's
    positive ``d⁺`` and each mined negative ``d⁻``:

    .. math::
        L_R = \frac{1}{|P|} \sum_{(q, d^+, d^-)} w_R \cdot -\log \frac{e^{R(q,d^+)}}{e^{R(q,d^+)} + e^{R(q,d^-)}},
        \qquad w_R = \frac{1}{1 - \sigma(S(q, d^-)/T)}

    and ``L_S`` the same with the roles swapped (``w_S`` from R's scores). Each weight comes from the
    other model with no gradient and in eval mode (no dropout), as in the official ``train.py``; ``T`` is
    the debias ratio (default 10, the official ``ranker.sh``). Only the mined hard negatives (``hard``)
    are weighted; random ones weigh 1. With ``debias_ratio=None`` the weights are 1: the plain pairwise
    loss.

    Inputs: ``scores`` ``[B, 1 + n]`` of the model being trained (positive first) and ``other`` of the same
    shape from the other model (or ``None``).

    Example::

        loss_r = CETPairLoss(10.0)(r_scores, s_scores_eval)
        loss_s = CETPairLoss(10.0)(s_scores, r_scores_eval)
    """

    def __init__(self, debias_ratio: float | None = 10.0) -> None:
        super().__init__()
        self.debias_ratio = debias_ratio

    def forward(self, scores: Tensor, other: Tensor | None = None, valid: Tensor | None = None,
                hard: Tensor | None = None) -> Tensor:
        losses = pair_losses(scores)
        if other is not None and self.debias_ratio is not None:
            losses = losses * weights_on_hard(other[:, 1:], self.debias_ratio, hard)
        if valid is None:
            return losses.mean()
        return (losses * valid).sum() / valid.sum().clamp(min=1)
