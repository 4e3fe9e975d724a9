"""CET on STAR's pairs: bi-encoder hard-negative training debiased against false negatives."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from retriever.encoders import load_sentence_transformer
from training.losses.base import BatchLoss, KnownPositives, batch_scores
from training.losses.cet import cet_weights
from training.losses.star import star_from_scores

PAPER_DEBIAS_RATIO = 10.0  # T in the official ranker.sh


class CETStarLoss(BatchLoss):
    r"""STAR's pairwise loss with CET weights (Cai et al., CIKM 2022), extended from cross-encoders to
    bi-encoders: the relevance model R is the bi-encoder being trained, the selection model S a second
    bi-encoder loaded from the same base checkpoint and trained alongside it.

    .. math::
        L_R = \frac{1}{|P|}\sum_{(i, d) \in P} w_R(q_i, d)\, \mathrm{softplus}(z_R(q_i, d) - z_R(q_i, d_i^+)),
        \qquad w_R(q, d^-) = \frac{1}{1 - \sigma(z_S(q, d^-) / T)}

    ``P`` is every in-batch and mined hard-negative pair (known positives masked); as in the official
    code, only the mined hard pairs carry a CET weight, in-batch (random) pairs weigh 1. ``z = cos / tau``
    (STAR's logit): bounded by ``1/tau``, so with ``T = 10`` and ``tau = 0.05`` every weight lies in
    ``[1.14, 8.4]``, the range a cross-encoder head's logits (|z| ≲ 10) give in the official code.
    ``L_S`` is the same for S with ``w_S`` from R. Weights are computed as the official code does: both
    models in eval mode (no dropout), without gradient. S takes its own AdamW step (gradient norm clipped
    at 1) inside each training forward; it is saved in each checkpoint and restored on resume.

    Inputs: as :class:`~training.losses.star.StarLoss`.

    Example::

        loss = CETStarLoss(model, known=KnownPositives(qrels, rows), selection=load_sentence_transformer("default"))
    """

    def __init__(self, model: nn.Module, known: KnownPositives | None = None, temperature: float = 0.05,
                 debias_ratio: float = PAPER_DEBIAS_RATIO, learning_rate: float = 2e-5,
                 selection: nn.Module | None = None) -> None:
        super().__init__(model, known, temperature, False)
        if selection is None:
            selection = copy.deepcopy(model)  # callers pass a fresh load of the base checkpoint
        self.selection = selection
        self.debias_ratio, self.learning_rate = debias_ratio, learning_rate
        self._optimizer: torch.optim.Optimizer | None = None

    def _selection_optimizer(self, device: torch.device) -> torch.optim.Optimizer:
        if self._optimizer is None or next(self.selection.parameters()).device != device:
            self.selection.to(device)
            self._optimizer = torch.optim.AdamW(self.selection.parameters(), lr=self.learning_rate)
        return self._optimizer

    @torch.no_grad()
    def _eval_scores(self, model: nn.Module, features: list[dict[str, Tensor]], labels: Tensor) -> Tensor:
        was_training = model.training
        model.eval()
        scores = batch_scores(model, features, labels, self.known, False)[0]
        model.train(was_training)
        return scores

    def hard_pair_weights(self, other_scores: Tensor) -> Tensor:
        """CET weights from the other model's cosines: 1 on the in-batch columns (the first ``B``, the
        batch's positives), ``1 / (1 - σ(cos / tau / T))`` on the mined hard-negative columns."""
        weights = torch.ones_like(other_scores, dtype=torch.float32)
        hard = other_scores.size(0)
        weights[:, hard:] = cet_weights(other_scores[:, hard:] / self.temperature, self.debias_ratio)
        return weights

    def pair_weights(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> tuple[Tensor, Tensor]:
        """``(w_R, w_S)``, each ``[B, D]``: R's weights come from S and S's from R, both in eval mode."""
        features = list(sentence_features)
        w_r = self.hard_pair_weights(self._eval_scores(self.selection, features, labels))
        w_s = self.hard_pair_weights(self._eval_scores(self.model, features, labels))
        return w_r, w_s

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        scores, positive_column, excluded = self.scores(features, labels)
        optimizer = self._selection_optimizer(scores.device)
        w_r, w_s = self.pair_weights(features, labels)
        if self.model.training:
            s_scores = batch_scores(self.selection.train(), features, labels, self.known, False)[0]
            star_from_scores(s_scores, positive_column, excluded, self.temperature, w_s).backward()
            torch.nn.utils.clip_grad_norm_(self.selection.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        return star_from_scores(scores, positive_column, excluded, self.temperature, w_r)

    def save_selection(self, folder: Path) -> None:
        self.selection.save(str(folder))

    def load_selection(self, folder: Path) -> None:
        device = next(self.selection.parameters()).device
        self.selection = load_sentence_transformer(str(folder)).to(device)
        self._optimizer = None
