"""The reranker objective table: ``retriever train-reranker --objective`` by name.

Each objective turns a step's scores (``[B, G]``: each group's positive first, then its negatives) into
the loss and each document's gradient weight ``|dL/d score|`` (what the gradient-weight plots show).
Adding an objective is its loss file in :mod:`training.losses` plus one function and one table line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from retriever.tables import table_entry
from training.losses.cet import CETPairLoss, weights_on_hard
from training.losses.listwise_contrastive import ListwiseContrastiveLoss
from training.losses.pointwise_sft import PointwiseSFTLoss

StepLoss = Callable[..., tuple[Tensor, Tensor]]


def _sft(config, scores, log_p_yes, log_p_no, labels, other=None, hard=None) -> tuple[Tensor, Tensor]:
    sft = PointwiseSFTLoss(config.sft_pos_weight)
    return sft(log_p_yes, log_p_no, labels), sft.gradient_weights(log_p_yes, log_p_no, labels)


def _cl(config, scores, log_p_yes, log_p_no, labels, other=None, hard=None) -> tuple[Tensor, Tensor]:
    loss = ListwiseContrastiveLoss(config.temperature)
    return loss(scores), loss.gradient_weights(scores)


def _pair(config, scores, log_p_yes, log_p_no, labels, other=None, hard=None) -> tuple[Tensor, Tensor]:
    debias = config.debias_ratio if config.debias == "cet" else None
    pair_weight = torch.sigmoid((scores[:, 1:] - scores[:, :1]).detach())  # |d softplus(s_j - s_0) / d s_j|
    if other is not None and debias is not None:
        pair_weight = pair_weight * weights_on_hard(other[:, 1:], debias, hard)
    weights = torch.cat([pair_weight.mean(dim=1, keepdim=True), pair_weight], dim=1)
    return CETPairLoss(debias)(scores, other, hard=hard), weights


@dataclass(frozen=True)
class Objective:
    step: StepLoss
    help: str
    debiasable: bool = False  # whether --debias cet applies (pairwise losses)


OBJECTIVES: dict[str, Objective] = {
    "sft": Objective(_sft, "pointwise yes/no cross-entropy (default)"),
    "cl": Objective(_cl, "listwise contrastive: softmax over each group"),
    "pair": Objective(_pair, "pairwise softplus(s_neg - s_pos), CET's", debiasable=True),
}


def objective(name: str) -> Objective:
    return table_entry(OBJECTIVES, "objective", name)


def objectives_help() -> str:
    return " | ".join(f"{name} ({spec.help})" for name, spec in OBJECTIVES.items())
