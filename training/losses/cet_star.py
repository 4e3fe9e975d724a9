"""CET on STAR's pairs: bi-encoder hard-negative training debiased against false negatives."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from training.losses.base import BatchLoss, KnownPositives, batch_scores
from training.losses.cet import cet_weights
from training.losses.star import star_from_scores


class CETStarLoss(BatchLoss):
    r"""STAR's pairwise loss with CET weights (Cai et al., CIKM 2022), extended from cross-encoders to
    bi-encoders: the relevance model R is the bi-encoder being trained, the selection model S a second
    bi-encoder started from the same checkpoint and trained alongside it.

    .. math::
        L_R = \frac{1}{|P|}\sum_{(i, d^-) \in P} w_R(q_i, d^-)\, \mathrm{softplus}(z_R(q_i, d^-) - z_R(q_i, d_i^+)),
        \qquad w_R = \frac{1}{1 - \sigma(z_S(q_i, d^-) / T)}

    with ``z = cos / tau`` (the logits STAR's two-way softmax uses) and ``P`` every in-batch and hard
    negative pair with known positives masked. ``L_S`` is the same for S with ``w_S`` from R's logits. Each
    weight is computed without gradient; S takes its own AdamW step inside each training forward, so both
    models are updated every step. S is saved in each checkpoint (``selection/``) and restored on resume.

    Inputs: as :class:`~training.losses.star.StarLoss`.

    Example::

        loss = CETStarLoss(model, known=KnownPositives(qrels, rows), debias_ratio=2.0)
    """

    def __init__(self, model: nn.Module, known: KnownPositives | None = None, temperature: float = 0.05,
                 debias_ratio: float = 2.0, learning_rate: float = 2e-5) -> None:
        super().__init__(model, known, temperature, False)
        self.selection = copy.deepcopy(model)
        self.debias_ratio, self.learning_rate = debias_ratio, learning_rate
        self._optimizer: torch.optim.Optimizer | None = None

    def _selection_optimizer(self, device: torch.device) -> torch.optim.Optimizer:
        if self._optimizer is None or next(self.selection.parameters()).device != device:
            self.selection.to(device)
            self._optimizer = torch.optim.AdamW(self.selection.parameters(), lr=self.learning_rate)
        return self._optimizer

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        scores, positive_column, excluded = self.scores(features, labels)
        optimizer = self._selection_optimizer(scores.device)
        s_scores, _, _ = batch_scores(self.selection, features, labels, self.known, False)
        tau, ratio = self.temperature, self.debias_ratio
        if self.model.training:
            w_s = cet_weights(scores / tau, ratio)
            star_from_scores(s_scores, positive_column, excluded, tau, w_s).backward()
            torch.nn.utils.clip_grad_norm_(self.selection.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        return star_from_scores(scores, positive_column, excluded, tau, cet_weights(s_scores / tau, ratio))

    def save_selection(self, folder: Path) -> None:
        self.selection.save(str(folder))

    def load_selection(self, folder: Path) -> None:
        from retriever.encoders import load_sentence_transformer

        device = next(self.selection.parameters()).device
        self.selection = load_sentence_transformer(str(folder)).to(device)
        self._optimizer = None
