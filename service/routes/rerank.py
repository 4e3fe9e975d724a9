"""Rerank in three dialects: TEI's and Cohere's (= Jina's) bodies on ``/rerank``, Cohere v1 on ``/v1/rerank`` and
Cohere v2 on ``/v2/rerank``. A ``/rerank`` body with ``texts`` is TEI's (answered with TEI's bare list), one
with ``documents`` is Cohere's (answered with Cohere's ``{id, results, meta}`` plus ``model``)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends
from pydantic import Discriminator, Tag

from service.compat_schemas import (
    CohereRerankResponse,
    CohereRerankResult,
    CohereRerankV1Request,
    CohereRerankV2Request,
    TEIRank,
    TEIRerankRequest,
)
from service.deps import check_texts, get_runtime, too_large
from service.logs import request_id
from service.runtime import Runtime, Timer
from service.served import check_reranker, rerank_scores
from service.tokens import fit_rerank_documents, in_model_thread

router = APIRouter(tags=["rerank"])


def _dialect(body: Any) -> str:
    return "tei" if isinstance(body, dict) and "texts" in body else "cohere"


RerankBody = Annotated[Annotated[TEIRerankRequest, Tag("tei")] | Annotated[CohereRerankV1Request, Tag("cohere")],
                       Discriminator(_dialect)]


async def _score(runtime: Runtime, query: str, documents: list[str], *, truncate: bool, side: str = "right",
                 max_tokens: int | None = None) -> np.ndarray:
    """The reranker's raw scores of ``documents`` against ``query``, within the limits of the service and of
    the reranker's token budget."""
    s = runtime.settings
    check_reranker(runtime, None)
    check_texts(runtime, [query], "queries")
    too_large("number of documents", len(documents), s.max_rerank_documents, "max_rerank_documents")
    too_large("longest document (characters)", max(len(d) for d in documents), s.max_document_chars,
              "max_document_chars")
    fallback = runtime.get(None).encoder.document
    documents = await in_model_thread(runtime, lambda: fit_rerank_documents(
        runtime.reranker, fallback, query, documents, truncate=truncate, side=side, max_tokens=max_tokens))
    timer = Timer(runtime.metrics)
    with timer.stage("rerank"):
        return await runtime.rerank_pairs([query] * len(documents), documents)


def _document_text(doc: str | dict[str, str], fields: list[str] | None) -> str:
    """What is ranked: a string itself; an object's ``text`` (the schema requires it without ``rank_fields``)
    or ``field: value`` lines of the ``rank_fields`` it has."""
    if isinstance(doc, str):
        return doc
    if fields:
        return "\n".join(f"{f}: {doc[f]}" for f in fields if f in doc)
    return doc["text"]


async def _cohere(runtime: Runtime, request: CohereRerankV1Request | CohereRerankV2Request,
                  version: str) -> CohereRerankResponse:
    check_reranker(runtime, request.model)
    fields = getattr(request, "rank_fields", None)
    texts = [_document_text(d, fields) for d in request.documents]
    raw = await _score(runtime, request.query, texts, truncate=True, max_tokens=request.max_tokens_per_doc)
    scores = rerank_scores(runtime.reranker, raw, raw=False)
    order = np.argsort(-scores, kind="stable")[: request.top_n or len(scores)]
    keep = getattr(request, "return_documents", False)
    results = [CohereRerankResult(index=int(i), relevance_score=float(scores[i]), document=(
        ({"text": d} if isinstance(d := request.documents[i], str) else dict(d)) if keep else None)) for i in order]
    return CohereRerankResponse(id=request_id.get() or "", results=results, meta={"api_version": {"version": version}})


@router.post("/rerank", response_model=list[TEIRank] | CohereRerankResponse, response_model_exclude_none=True)
async def rerank(request: Annotated[RerankBody, Body()],
                 runtime: Runtime = Depends(get_runtime)) -> list[TEIRank] | CohereRerankResponse:
    """TEI body (`texts`): a list of `{index, score, text?}`, best first, every text ranked; scores in [0, 1]
    (a sigmoid over cross-encoder logits) unless `raw_scores`. Cohere/Jina body (`documents`): Cohere's response."""
    if isinstance(request, CohereRerankV1Request):
        response = await _cohere(runtime, request, "1")
        response.model = runtime.reranker.name
        return response
    raw = await _score(runtime, request.query, request.texts, truncate=request.truncate,
                       side=request.truncation_direction.lower())
    scores = rerank_scores(runtime.reranker, raw, raw=request.raw_scores)
    return [TEIRank(index=int(i), score=float(scores[i]), text=request.texts[i] if request.return_text else None)
            for i in np.argsort(-scores, kind="stable")]


@router.post("/v1/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True)
async def rerank_v1(request: CohereRerankV1Request, runtime: Runtime = Depends(get_runtime)) -> CohereRerankResponse:
    """Cohere v1 rerank (Jina's rerank API has the same shape)."""
    return await _cohere(runtime, request, "1")


@router.post("/v2/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True)
async def rerank_v2(request: CohereRerankV2Request, runtime: Runtime = Depends(get_runtime)) -> CohereRerankResponse:
    """Cohere v2 rerank."""
    return await _cohere(runtime, request, "2")
