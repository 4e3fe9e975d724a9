"""Retrieval losses, one per file. Each takes (anchor, positive, negative_1..n) columns plus a ``label``
column holding the row index, which the loss uses to mask known positives."""

from training.losses.base import KnownPositives
from training.losses.cet import CETPairLoss, cet_weights
from training.losses.infonce import ContrastiveLoss, infonce_from_scores
from training.losses.listwise_contrastive import ListwiseContrastiveLoss
from training.losses.mw import MWLoss, mw_from_scores
from training.losses.pointwise_sft import PointwiseSFTLoss
from training.losses.star import StarLoss, star_from_scores

__all__ = [
    "CETPairLoss",
    "ListwiseContrastiveLoss",
    "PointwiseSFTLoss",
    "cet_weights",
    "ContrastiveLoss",
    "KnownPositives",
    "MWLoss",
    "StarLoss",
    "infonce_from_scores",
    "mw_from_scores",
    "star_from_scores",
]
