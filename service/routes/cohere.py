"""Cohere's ``POST /v1/embed`` and ``POST /v2/embed``.

``input_type`` picks the tower: ``search_query`` the query tower, ``search_document`` (and ``classification``,
``clustering``, or none on v1) the document tower. ``embedding_types`` float, int8, uint8, binary, ubinary and
base64 (little-endian float32) come from one encoding; int8/uint8 use fixed calibration ranges from the served
index's stored document vectors (:func:`service.vectors.calibration_ranges`).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends

from service.compat_schemas import CohereEmbedResponse, CohereEmbedV1Request, CohereEmbedV2Request
from service.deps import get_runtime
from service.logs import request_id
from service.routes.embed import check_inputs, fit_to_model
from service.runtime import Runtime
from service.served import resolve_index
from service.tokens import EncoderTokens, in_model_thread
from service.vectors import calibration_ranges, check_dimensions, encode, quantize, to_base64, truncate

router = APIRouter(tags=["cohere"])


def _encoded(vectors: np.ndarray, kinds: list[str], ranges) -> dict[str, list]:
    out: dict[str, list] = {}
    for kind in kinds:
        if kind == "float":
            out[kind] = vectors.tolist()
        elif kind == "base64":
            out[kind] = [to_base64(v) for v in vectors]
        else:
            out[kind] = quantize(vectors, kind, ranges)
    return out


async def _embed(runtime: Runtime, request: CohereEmbedV1Request, version: str) -> CohereEmbedResponse:
    live = resolve_index(runtime, request.model)
    side = "query" if request.input_type == "search_query" else "document"
    encoder = live.encoder.query if side == "query" else live.encoder.document
    dims = check_dimensions(encoder, getattr(request, "output_dimension", None), "output_dimension")
    check_inputs(runtime, request.texts, side, "texts")
    view = EncoderTokens.of(encoder)
    texts, counts = await in_model_thread(runtime, lambda: fit_to_model(
        view, request.texts, allow=request.truncate != "NONE", side="left" if request.truncate == "START" else "right",
        hint="send truncate END or START to cut it", what="texts", budget=getattr(request, "max_tokens", None)))
    vectors = truncate(await encode(runtime, encoder, texts, side), dims)
    kinds = request.embedding_types or ["float"]
    ranges = None
    if {"int8", "uint8"} & set(kinds):
        ranges = await runtime.in_index_thread(calibration_ranges, live, dims)
    by_type = version == "2" or request.embedding_types is not None
    embeddings = _encoded(vectors, kinds, ranges)
    meta = {"api_version": {"version": version}, "billed_units": {"input_tokens": sum(counts)}}
    return CohereEmbedResponse(id=request_id.get() or "", texts=request.texts, meta=meta,
                               response_type="embeddings_by_type" if by_type else "embeddings_floats",
                               embeddings=embeddings if by_type else embeddings["float"])


@router.post("/v1/embed", response_model=CohereEmbedResponse)
async def embed_v1(request: CohereEmbedV1Request, runtime: Runtime = Depends(get_runtime)) -> CohereEmbedResponse:
    """Cohere v1 embed: a list of floats unless `embedding_types` is given."""
    return await _embed(runtime, request, "1")


@router.post("/v2/embed", response_model=CohereEmbedResponse)
async def embed_v2(request: CohereEmbedV2Request, runtime: Runtime = Depends(get_runtime)) -> CohereEmbedResponse:
    """Cohere v2 embed: embeddings by type (default float), with `max_tokens` and `output_dimension`."""
    return await _embed(runtime, request, "2")
