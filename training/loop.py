"""Pieces of the training loops that no trainer provides: step count, seeded epoch shuffling (the reranker
loop's) and batch embedding with autograd."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch import Tensor, nn

from training.config import TrainConfig

__all__ = ["embed_features", "embed_texts", "epoch_batches", "total_steps"]


def total_steps(n_items: int, config: TrainConfig) -> int:
    """``max_steps`` when set, else epochs x ceil(items / batch size)."""
    if config.max_steps > 0:
        return config.max_steps
    return int(int(np.ceil(n_items / config.batch_size)) * config.epochs)


def epoch_batches(items: Sequence, batch_size: int, steps: int, seed: int) -> Iterator[list]:
    """``steps`` batches; each epoch is a fresh seeded permutation, the last batch of an epoch may be short."""
    rng = np.random.default_rng(seed)
    order: list = []
    for _ in range(steps):
        if not order:
            order = list(rng.permutation(items))
        batch, order = order[:batch_size], order[batch_size:]
        yield batch


def embed_texts(model, texts: list[str]) -> Tensor:
    """L2-normalised sentence embeddings with autograd (unlike ``model.encode``)."""
    features = model.preprocess(texts)
    features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
    return embed_features(model, features)


def embed_features(model, features: dict) -> Tensor:
    """``embed_texts`` of texts already tokenized (by a collator), through ``model`` (DDP-wrapped or not)."""
    return nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)
