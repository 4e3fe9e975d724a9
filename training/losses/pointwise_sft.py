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
    ``log p`` is the full-vocabulary log-softmax at the answer position (cross-entropy on the label token);
    for a cross-encoder with one logit ``s``, ``log p(yes) = log σ(s)`` and ``log p(no) = log σ(-s)``, which
    is binary cross-entropy.

    Each document's gradient weight, ``|∂ℓ_n/∂z_label| = 1 - p_n(label)``, depends on that document alone:
    the paper's explanation of why SFT keeps learning from hard negatives when many easy ones are present.

    Inputs: ``log_p_yes`` and ``log_p_no`` of shape ``[B, G]`` and ``labels`` in {0, 1} of the same shape.

    Example::

        loss = PointwiseSFTLoss()(out.log_p_yes, out.log_p_no, labels)
    """

    def forward(self, log_p_yes: Tensor, log_p_no: Tensor, labels: Tensor) -> Tensor:
        labels = labels.to(log_p_yes.dtype)
        return -(labels * log_p_yes + (1 - labels) * log_p_no).mean()

    @staticmethod
    def gradient_weights(log_p_yes: Tensor, log_p_no: Tensor, labels: Tensor) -> Tensor:
        """``1 - p(label)`` per document: the magnitude of its loss's gradient on the label logit."""
        log_p_label = torch.where(labels.bool(), log_p_yes, log_p_no)
        return 1 - log_p_label.detach().exp()
