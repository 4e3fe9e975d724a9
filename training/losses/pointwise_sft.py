"""Pointwise SFT loss for rerankers: each document is its own yes/no classification."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointwiseSFTLoss(nn.Module):
    r"""Supervised fine-tuning, pointwise ("Supervised Fine-Tuning or Contrastive Learning? Towards Better
    Multimodal LLM Reranking", arXiv 2510.14824).

    .. math::
        L = -\frac{1}{N} \sum_{n} \big[ y_n \log p_n(\text{yes}) + (1 - y_n) \log p_n(\text{no}) \big]

    over the ``N`` (query, document) pairs of the batch, ``y = 1`` for positives. For a causal LM,
    ``log p`` is the log-softmax over the two answer logits {yes, no} at the answer position (the paper's
    ``-log p(l | P({yes, no}))``); for a cross-encoder with one logit ``s``, ``log p(yes) = log σ(s)`` and
    ``log p(no) = log σ(-s)``, which is binary cross-entropy.

    Class balance: a group of one positive and n negatives makes the positives 1/(n+1) of the terms, and an
    undertrained model settles on that prior. ``pos_weight`` multiplies each positive's term (as
    ``BCEWithLogitsLoss(pos_weight=...)``; ``pos_weight = n`` balances the classes). The paper describes a
    plain per-document cross-entropy (``pos_weight = 1``, the default).

    Each document's gradient weight, ``|∂ℓ_n/∂z_label| = 1 - p_n(label)``, depends on that document alone:
    the paper's explanation of why SFT keeps learning from hard negatives when many easy ones are present.

    Inputs: ``log_p_yes`` and ``log_p_no`` of shape ``[B, G]`` and ``labels`` in {0, 1} of the same shape.

    Example::

        loss = PointwiseSFTLoss()(out.log_p_yes, out.log_p_no, labels)
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = 1.0 if pos_weight is None else float(pos_weight)

    def forward(self, log_p_yes: Tensor, log_p_no: Tensor, labels: Tensor) -> Tensor:
        labels = labels.to(log_p_yes.dtype)
        return -(self.pos_weight * labels * log_p_yes + (1 - labels) * log_p_no).mean()

    def gradient_weights(self, log_p_yes: Tensor, log_p_no: Tensor, labels: Tensor) -> Tensor:
        """``pos_weight^y (1 - p(label))`` per document: the magnitude of its loss's gradient on the label logit."""
        log_p_label = torch.where(labels.bool(), log_p_yes, log_p_no)
        scale = torch.where(labels.bool(), self.pos_weight, 1.0)
        return scale * (1 - log_p_label.detach().exp())
