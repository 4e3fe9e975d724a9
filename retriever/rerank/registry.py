"""The reranker architecture table: how a folder is recognised, and the class that serves it.

Adding an architecture is its inference module plus one line here (and, to train it, one line in
``training.rerank_models.SCORERS``). Detection tries the entries in order, after the ``arch`` that
``retriever train-reranker`` saves in ``reranker.json``; the last entry is the fallback.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retriever.rerank.base import read_settings
from retriever.rerank.lm_weights import SMOLLM2_ALIASES
from retriever.tables import table_entry


def _is_causal_lm(path: str) -> bool:
    """The SmolLM2 alias, or a Hugging Face folder whose config names a ``*ForCausalLM`` architecture."""
    if path.lower() in SMOLLM2_ALIASES:
        return True
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    return any(a.endswith("ForCausalLM") for a in json.loads(config.read_text()).get("architectures") or [])


@dataclass(frozen=True)
class RerankerArch:
    detect: Callable[[str], bool]  # does an (untagged) folder or name hold this architecture?
    inference: str  # "module:Class", constructed as Class(path, batch_size, max_length, device[, backend])
    batch_size: int  # default pairs per forward pass
    onnx: bool  # whether the onnx / onnx-int8 backends apply (the class then takes ``backend``)
    cross_encoder: bool  # a sequence-classification cross-encoder (what /info reports)

    def load_class(self) -> type:
        module, _, name = self.inference.partition(":")
        return getattr(importlib.import_module(module), name)


ARCHITECTURES: dict[str, RerankerArch] = {
    "causal-lm": RerankerArch(_is_causal_lm, "retriever.rerank.causal_lm:CausalLMReranker", 16, False, False),
    "cross-encoder": RerankerArch(lambda path: True, "retriever.rerank.cross_encoder:CrossEncoderReranker", 64,
                                  True, True),
}


def architecture(name: str) -> RerankerArch:
    """The table's entry; an unknown name is refused as every table refuses one (:func:`table_entry`)."""
    return table_entry(ARCHITECTURES, "reranker architecture", name)


def reranker_arch(path: str) -> str:
    """The ``arch`` that ``retriever train-reranker`` saved beside the model, else the first table entry
    whose detection accepts the folder (``causal-lm`` for causal-LM configs and the SmolLM2 alias,
    ``cross-encoder`` otherwise)."""
    if path.lower() not in SMOLLM2_ALIASES:
        settings = read_settings(path)
        if settings:
            return settings.get("arch", "cross-encoder")
    return next(name for name, arch in ARCHITECTURES.items() if arch.detect(path))


def is_cross_encoder(path: str | None) -> bool:
    """Whether the reranker at ``path`` is a cross-encoder (False for none, and for a causal LM)."""
    return bool(path) and architecture(reranker_arch(path)).cross_encoder
