"""What the service serves, in the terms client APIs use: model names and aliases, the reranker's score scale,
and the /info fields TEI clients read.

A served model is named by its index name; the model id behind it and that id's last path part are aliases
(``tiny``, ``sentence-transformers/all-MiniLM-L6-v2`` and ``all-MiniLM-L6-v2`` all name an index built with
MiniLM). The reranker is named by its ``name`` (``cross-encoder:/path``), the part after the colon, and its last
path part.
"""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from retriever.live import LiveIndex
from service.api_errors import ClientError


def _short(model_id: str) -> str:
    return model_id.rstrip("/").rsplit("/", 1)[-1]


def index_aliases(live: LiveIndex) -> list[str]:
    ids = [live.encoder.document.model_id, live.encoder.query.model_id]
    return list(dict.fromkeys([live.name, *ids, *map(_short, ids)]))


def resolve_index(runtime, model: str | None, param: str = "model") -> LiveIndex:
    """The index a client's ``model`` names (the default index when it names none); a 404 otherwise."""
    runtime.get(None)  # 503 while loading
    if model is None or model in runtime.indexes:
        return runtime.get(model)
    for live in runtime.indexes.values():
        if model in index_aliases(live):
            return live
    raise ClientError(404, f"model '{model}' is not served here; served: {', '.join(runtime.indexes)} "
                           "(GET /v1/models lists them with their aliases)", param=param, code="model_not_found")


def reranker_aliases(reranker) -> list[str]:
    name = reranker.name
    tail = name.split(":", 1)[-1]
    return list(dict.fromkeys([name, tail, _short(tail)]))


def check_reranker(runtime, model: str | None) -> None:
    runtime.get(None)  # 503 while loading
    aliases = reranker_aliases(runtime.reranker)
    if model is not None and model not in aliases:
        raise ClientError(404, f"rerank model '{model}' is not served here; the reranker is '{aliases[0]}' "
                               f"(aliases: {', '.join(aliases[1:])})", param="model", code="model_not_found")


def created_at(live: LiveIndex) -> int:
    try:
        return int(datetime.fromisoformat(live.manifest.created_at).timestamp())
    except (TypeError, ValueError):
        return 0


def rerank_scores(reranker, scores: np.ndarray, raw: bool) -> np.ndarray:
    """The reranker's scores on one scale: by default in [0, 1] where the model makes logits or
    probabilities (cross-encoder logits go through a sigmoid, as TEI does; the causal LM's P(yes) stays),
    and ``raw`` logits on request. The bi-encoder fallback's cosines are returned as they are either way."""
    name = getattr(reranker, "name", "")
    scores = np.asarray(scores, dtype=np.float64)
    if name.startswith("cross-encoder:") and not raw:
        return 1.0 / (1.0 + np.exp(-scores))
    if name.startswith("causal-lm:") and raw:
        p = np.clip(scores, 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)
    return scores


def tei_info(runtime) -> dict:
    """TEI's /info fields, for the default index's document model (none while loading)."""
    if not runtime.indexes:
        return {}
    live = runtime.get(None)
    model = live.encoder.document.model
    pooling = getattr(model[1], "pooling_mode", None) if len(model) > 1 else None
    s = runtime.settings
    max_input = int(model.max_seq_length)
    try:
        ours = version("retrieval-trainer")
    except PackageNotFoundError:
        ours = "0.1.0"
    return {
        "model_id": live.encoder.document.model_id, "model_sha": live.encoder.document.fingerprint,
        "model_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "model_type": {"embedding": {"pooling": str(pooling or "mean")}},
        "max_concurrent_requests": getattr(s, "max_concurrent_requests", None),
        "max_input_length": max_input, "max_batch_tokens": s.batch_max_size * max_input,
        "max_batch_requests": s.batch_max_size, "max_client_batch_size": s.max_batch, "auto_truncate": False,
        "tokenization_workers": 1, "version": ours, "sha": None, "docker_label": None,
    }
