"""Open a reranker folder of either architecture by what it contains."""

from __future__ import annotations

import json
from pathlib import Path

from retriever.errors import ModelError
from retriever.rerank.base import read_settings
from retriever.rerank.lm_weights import SMOLLM2_ALIASES


def reranker_arch(path: str) -> str:
    """``causal-lm`` for folders saved by ``retriever train-reranker --arch causal-lm``, for causal-LM
    configs and for the SmolLM2 alias; ``cross-encoder`` otherwise."""
    if path.lower() in SMOLLM2_ALIASES:
        return "causal-lm"
    folder = Path(path)
    settings = read_settings(folder)
    if settings:
        return settings.get("arch", "cross-encoder")
    config = folder / "config.json"
    if config.is_file():
        architectures = json.loads(config.read_text()).get("architectures") or []
        if any(a.endswith("ForCausalLM") for a in architectures):
            return "causal-lm"
    return "cross-encoder"


def load_reranker(path: str, batch_size: int | None = None, max_length: int | None = None, device: str | None = None,
                  backend: str | None = None):
    """The reranker the CLI, the evaluation and the service all use. ``backend`` (torch, onnx, onnx-int8,
    auto; default ``$RETRIEVER_BACKEND``) applies to cross-encoders; causal LMs always run on torch."""
    from retriever.onnx.files import check_backend_name, default_backend

    if not path:
        raise ModelError("no reranker path given")
    backend = check_backend_name(backend or default_backend())
    if reranker_arch(path) == "causal-lm":
        from retriever.rerank.causal_lm import CausalLMReranker

        if backend in ("onnx", "onnx-int8"):
            raise ModelError(f"the {backend} backend covers cross-encoders only; run causal-LM rerankers on torch")
        return CausalLMReranker(path, batch_size or 16, max_length, device)
    from retriever.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(path, batch_size or 64, max_length, device, backend)
