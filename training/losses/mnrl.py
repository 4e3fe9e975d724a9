"""sentence-transformers' MultipleNegativesRankingLoss behind the batch-loss constructor of the loss table."""

from __future__ import annotations

from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import nn

from training.losses.base import KnownPositives


class MNRLoss(MultipleNegativesRankingLoss):
    """InfoNCE over in-batch negatives as sentence-transformers computes it (``scale = 1 / tau``); it does
    not mask known positives, so ``known`` is accepted and unused."""

    def __init__(self, model: nn.Module, known: KnownPositives | None = None, temperature: float = 0.05,
                 gather_across_devices: bool = False) -> None:
        super().__init__(model, scale=1.0 / temperature, gather_across_devices=gather_across_devices)
