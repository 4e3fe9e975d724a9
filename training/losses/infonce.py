"""Contrastive (InfoNCE) loss over in-batch and hard negatives, with known positives masked."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from training.losses.base import BatchLoss


def infonce_from_scores(scores: Tensor, positive_column: Tensor, excluded: Tensor, temperature: float) -> Tensor:
    """``-mean_i log softmax_j(s_ij / tau)[pos_i]`` over the columns not excluded (the positive is kept)."""
    rows = torch.arange(scores.size(0), device=scores.device)
    drop = excluded.clone()
    drop[rows, positive_column] = False
    logits = (scores / temperature).masked_fill(drop, float("-inf"))
    return nn.functional.cross_entropy(logits, positive_column)


class ContrastiveLoss(BatchLoss):
    r"""InfoNCE over in-batch and hard negatives (van den Oord et al., 2018; Karpukhin et al., DPR, 2020).

    .. math::
        L = -\frac{1}{B}\sum_i \log \frac{e^{s(q_i, d_i^+)/\tau}}{\sum_{d \in D \setminus P_i} e^{s(q_i, d)/\tau}}

    with cosine similarity ``s``, ``D`` every document of the batch (all positives and all hard
    negatives) and ``P_i`` the known positives of ``q_i`` other than ``d_i^+``: a document labelled
    relevant to ``q_i`` is never used as its negative. It equals sentence-transformers'
    ``MultipleNegativesRankingLoss`` (``scale = 1/tau``) when no known positive falls into the batch.

    Inputs: columns ``(anchor, positive[, negative_1, ..., negative_n], label)`` where ``label`` is the
    training-row index that :class:`KnownPositives` resolves.

    Example::

        loss = ContrastiveLoss(model, known=KnownPositives(qrels, rows), temperature=0.05)
        trainer = SentenceTransformerTrainer(model=model, train_dataset=ds, loss=loss)
    """

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        scores, positive_column, excluded = self.scores(sentence_features, labels)
        return infonce_from_scores(scores, positive_column, excluded, self.temperature)

    @property
    def citation(self) -> str:
        return "van den Oord, Li, Vinyals. Representation Learning with Contrastive Predictive Coding. 2018."
