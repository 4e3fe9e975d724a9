"""The MW (Mann-Whitney / AUC) loss of "Optimizing What Matters: AUC-Driven Learning for Robust Neural
Retrieval" (arXiv 2510.00137)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from sentence_transformers.util.distributed import get_world_size
from torch import Tensor, nn

from training.losses.base import BatchLoss, KnownPositives, gather


def mw_from_scores(positives: Tensor, negatives: Tensor, temperature: float, normalize: str = "pairs") -> Tensor:
    """``-log sigmoid((s+_i - s-) / tau)`` over every (positive, negative) pair, averaged over the pairs
    (``normalize="pairs"``) or summed over negatives and averaged over positives (``"batch"``: the paper's
    literal ``1/B``)."""
    if negatives.numel() == 0:
        return positives.sum() * 0.0
    margins = (positives[:, None] - negatives[None, :]) / temperature
    losses = nn.functional.softplus(-margins)
    return losses.mean() if normalize == "pairs" else losses.sum() / positives.numel()


class MWLoss(BatchLoss):
    r"""MW loss: a smooth Mann-Whitney U statistic, i.e. a differentiable global ROC AUC.

    .. math::
        L = -\frac{1}{B\,|S^-|} \sum_{i=1}^{B} \sum_{s^- \in S^-} \log \sigma\!\left(\frac{s_i^+ - s^-}{\tau}\right)

    ``s_i^+`` is the cosine of query ``i`` with its positive. ``S^-`` is the union over the whole batch of
    every negative score: each query against every other query's positive and against every hard negative
    in the batch, with known positives (qrels) masked out. Because every positive is compared with the
    negatives of *other* queries too, a per-query offset of the scores changes the loss (the paper's
    Lemma 1), unlike InfoNCE: the loss makes scores comparable across queries, so one global threshold
    means something.

    Normalisation: the paper writes ``-(1/B) \sum_i \sum_{s^-}``; we also divide by ``|S^-|``, which grows
    with the square of the batch size, so that the gradient scale (and the learning rate) does not depend
    on the batch size. ``normalize="batch"`` gives the paper's literal ``1/B`` (its gradient is ``|S^-|``
    times larger, so it needs a learning rate that shrinks with the batch). Default ``tau = 0.01``.

    Under DDP (``gather_across_devices=True``) the negative scores of every process are gathered, so
    ``S^-`` is the union over the global batch, as in a single process.

    Inputs: columns ``(anchor, positive[, negative_1, ..., negative_n], label)``; ``label`` is the
    training-row index resolved by :class:`KnownPositives`.

    Example::

        loss = MWLoss(model, known=KnownPositives(qrels, rows), temperature=0.01)
    """

    def __init__(self, model: nn.Module, known: KnownPositives | None = None, temperature: float = 0.01,
                 gather_across_devices: bool = False, normalize: str = "pairs") -> None:
        super().__init__(model, known, temperature, gather_across_devices)
        if normalize not in ("pairs", "batch"):
            raise ValueError("normalize must be 'pairs' or 'batch'")
        self.normalize = normalize

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        scores, positive_column, excluded = self.scores(sentence_features, labels)
        positives = scores[torch.arange(scores.size(0), device=scores.device), positive_column]
        negatives = scores[~excluded]
        if self.gather_across_devices:
            negatives = _gather_ragged(negatives)
        return mw_from_scores(positives, negatives, self.temperature, self.normalize)

    @property
    def citation(self) -> str:
        return "Optimizing What Matters: AUC-Driven Learning for Robust Neural Retrieval. arXiv 2510.00137."


def _gather_ragged(values: Tensor) -> Tensor:
    """All-gather a 1-d tensor whose length differs across processes (padded with NaN, then dropped)."""
    if get_world_size() == 1:
        return values
    length = torch.tensor([values.numel()], device=values.device)
    longest = int(gather(length, with_grad=False).max())
    padded = torch.cat([values, values.new_full((longest - values.numel(),), float("nan"))])
    gathered = gather(padded, with_grad=True)
    return gathered[~torch.isnan(gathered)]
