"""Batch embedding with autograd, for the Trainer losses of the query loops (ADORE, soft tokens)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["embed_features", "embed_texts"]


def embed_texts(model, texts: list[str]) -> Tensor:
    """L2-normalised sentence embeddings with autograd (unlike ``model.encode``)."""
    features = model.preprocess(texts)
    features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
    return embed_features(model, features)


def embed_features(model, features: dict) -> Tensor:
    """``embed_texts`` of texts already tokenized (by a collator), through ``model`` (DDP-wrapped or not)."""
    return nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)
