"""STAR's loss (Zhan et al., "Optimizing Dense Retrieval Model Training with Hard Negatives", SIGIR 2021)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from training.losses.base import BatchLoss


def star_from_scores(scores: Tensor, positive_column: Tensor, excluded: Tensor, temperature: float,
                     weights: Tensor | None = None) -> Tensor:
    """Mean over valid (positive, negative) pairs of the two-way softmax cross-entropy
    ``-log(e^{s+} / (e^{s+} + e^{s-})) = softplus((s- - s+) / tau)``, each pair times ``weights`` if given."""
    rows = torch.arange(scores.size(0), device=scores.device)
    positives = scores[rows, positive_column][:, None]
    pair_losses = nn.functional.softplus((scores - positives) / temperature)
    if weights is not None:
        pair_losses = pair_losses * weights
    valid = ~excluded
    return (pair_losses * valid).sum() / valid.sum().clamp(min=1)


class StarLoss(BatchLoss):
    r"""STAR: static hard negatives plus random (in-batch) negatives, one shared encoder.

    .. math::
        L = \frac{1}{|P|} \sum_{(i, d^-) \in P} -\log \frac{e^{s(q_i, d_i^+)/\tau}}
                {e^{s(q_i, d_i^+)/\tau} + e^{s(q_i, d^-)/\tau}}

    ``P`` holds every (query, negative) pair of the batch: the other queries' positives and every hard
    negative in the batch (the random negatives reuse the batch's document embeddings, as in the paper),
    with labelled positives masked. Each pair is its own two-way softmax, unlike InfoNCE's one softmax over
    all candidates; the paper averages the in-batch and the hard pairs together, and so do we. The paper
    scores with raw inner products; with normalised embeddings a temperature (default 0.05) restores the
    score range.

    Inputs: ``(anchor, positive, negative_1..n, label)``; negatives come from ``retriever mine``.
    Example::

        loss = StarLoss(model, known=KnownPositives(qrels, rows))
    """

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        scores, positive_column, excluded = self.scores(sentence_features, labels)
        return star_from_scores(scores, positive_column, excluded, self.temperature)
