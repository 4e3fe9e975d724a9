"""What the embedding routes do to vectors: un-normalised output, Matryoshka truncation, quantisation, base64.

Matryoshka support is declared by the model folder: a ``matryoshka.json`` beside its ``modules.json``,
``{"dimensions": [768, 512, 256, 128, 64]}``, listing the sizes it was trained to be truncated to. A request for
one of them gets the first ``d`` components, renormalised; the full size is always allowed; anything else is a 400.
"""

from __future__ import annotations

import base64
import json
import logging
import weakref
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from retriever.encoders import TextEncoder
from retriever.encoders.text_encoder import resolve_model_path
from service.api_errors import ClientError

logger = logging.getLogger(__name__)
MATRYOSHKA_FILE = "matryoshka.json"
CALIBRATION_SAMPLE = 4096
_ranges: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LiveIndex -> {dimension: (2, d) ranges}


@lru_cache(maxsize=64)
def matryoshka_dims(model_id: str) -> tuple[int, ...]:
    """The truncation sizes a model folder declares (empty when it declares none)."""
    folder = Path(resolve_model_path(model_id)[0])
    file = folder / MATRYOSHKA_FILE
    if not file.is_file():
        return ()
    try:
        dims = json.loads(file.read_text())["dimensions"]
        return tuple(sorted({int(d) for d in dims}, reverse=True))
    except (ValueError, KeyError, TypeError):
        logger.warning("ignoring %s: expected {\"dimensions\": [int, ...]}", file)
        return ()


def check_dimensions(encoder: TextEncoder, dimensions: int | None, param: str) -> int | None:
    """``dimensions`` when the encoder can truncate to it, None when no truncation is needed; else a 400."""
    full = encoder.dimension
    if dimensions is None or dimensions == full:
        return None
    allowed = matryoshka_dims(encoder.model_id)
    if not allowed:
        raise ClientError(400, f"{param}: model '{encoder.model_id}' does not declare Matryoshka support "
                               f"({MATRYOSHKA_FILE} in its folder), so it serves {full} dimensions only", param=param)
    if dimensions not in allowed:
        raise ClientError(400, f"{param}: {dimensions} is not one of the sizes model '{encoder.model_id}' was "
                               f"trained for: {', '.join(map(str, allowed))}", param=param)
    return dimensions


def truncate(vectors: np.ndarray, dimensions: int | None, normalize: bool = True) -> np.ndarray:
    if dimensions is None:
        return vectors
    head = np.ascontiguousarray(vectors[:, :dimensions], dtype=np.float32)
    if normalize:
        head /= np.maximum(np.linalg.norm(head, axis=1, keepdims=True), 1e-12)
    return head


async def encode(runtime, encoder: TextEncoder, texts: list[str], side: str, normalize: bool = True) -> np.ndarray:
    """Normalised vectors through the service's cached, micro-batched path; with ``normalize=False`` the
    model's own output (no extra L2 step; a model ending in a Normalize module stays unit length)."""
    if normalize:
        return await runtime.encode(encoder, texts, side)

    def raw(batch: list[str]) -> np.ndarray:
        fn = encoder.model.encode_query if side == "query" else encoder.model.encode_document
        with torch.inference_mode():
            return fn(batch, batch_size=encoder.batch_size, normalize_embeddings=False, convert_to_numpy=True,
                      show_progress_bar=False)

    batcher = runtime._batcher((f"encode-raw-{side}", id(encoder)), raw)
    return np.asarray(await batcher.submit(texts), dtype=np.float32)


def to_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64-encoded (what OpenAI and Cohere send)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def calibration_ranges(live, dimensions: int | None) -> np.ndarray:
    """Per-dimension (min, max) for int8/uint8: over up to 4096 of the index's stored document vectors
    (evenly spaced, truncated like the request), computed once per opened index and dimension. Where the
    store cannot hand vectors back, [-1, 1], the bound of any unit vector's components."""
    per_index = _ranges.setdefault(live, {})
    key = dimensions or live.index.dimension
    if key not in per_index:
        sample = _stored_vectors(live)
        if sample is None or len(sample) < 2:
            per_index[key] = np.array([[-1.0] * key, [1.0] * key], dtype=np.float32)
        else:
            sample = truncate(sample, dimensions)
            per_index[key] = np.stack([sample.min(axis=0), sample.max(axis=0)]).astype(np.float32)
    return per_index[key]


def _stored_vectors(live) -> np.ndarray | None:
    names = getattr(live.index, "names", None)
    cpu = getattr(live.index, "cpu_index", None)
    if names is None or cpu is None:
        return None
    labels = np.flatnonzero(np.array([n is not None for n in names], dtype=bool))
    if labels.size > CALIBRATION_SAMPLE:
        labels = labels[np.linspace(0, labels.size - 1, CALIBRATION_SAMPLE).astype(np.int64)]
    try:
        return np.asarray(cpu.reconstruct_batch(labels.astype(np.int64)), dtype=np.float32)
    except RuntimeError:  # e.g. an IVF index without a direct map
        return None


def quantize(vectors: np.ndarray, kind: str, ranges: np.ndarray | None) -> list:
    """sentence-transformers' ``quantize_embeddings`` with fixed ``ranges`` for int8/uint8 (so that a vector's
    codes never depend on the other texts of its request)."""
    try:
        from sentence_transformers.util.quantization import quantize_embeddings  # moved between versions
    except ImportError:  # older sentence-transformers
        from sentence_transformers.quantization import quantize_embeddings  # moved between versions

    kwargs = {"ranges": ranges} if kind in ("int8", "uint8") else {}
    return quantize_embeddings(vectors, kind, **kwargs).astype(np.int64).tolist()
