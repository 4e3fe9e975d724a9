"""Retrieval and reranking losses, one per file; :mod:`training.losses.registry` is the table of the
retrieval losses by name. Each batch loss takes (anchor, positive, negative_1..n) columns plus a ``label``
column holding the row index, which the loss uses to mask known positives.

The names below are imported on first use, so that reading the loss table (the config, the CLI) does not
import torch."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "KnownPositives": "training.losses.base",
    "CETPairLoss": "training.losses.cet",
    "cet_weights": "training.losses.cet",
    "ContrastiveLoss": "training.losses.infonce",
    "infonce_from_scores": "training.losses.infonce",
    "ListwiseContrastiveLoss": "training.losses.listwise_contrastive",
    "MWLoss": "training.losses.mw",
    "mw_from_scores": "training.losses.mw",
    "PointwiseSFTLoss": "training.losses.pointwise_sft",
    "StarLoss": "training.losses.star",
    "star_from_scores": "training.losses.star",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'training.losses' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
