from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends

from service.deps import check_texts, get_runtime, too_large
from service.runtime import Runtime, Timer
from service.schemas import RerankRequest, RerankResponse, RerankResult

router = APIRouter(tags=["rerank"])


@router.post("/rerank", response_model=RerankResponse, response_model_exclude_none=True)
async def rerank(request: RerankRequest, runtime: Runtime = Depends(get_runtime)) -> RerankResponse:
    """Cohere / TEI / infinity-style rerank: score every document against the query."""
    s = runtime.settings
    check_texts(runtime, [request.query])
    too_large("number of documents", len(request.documents), s.max_rerank_documents, "max_rerank_documents")
    too_large("longest document (characters)", max(len(d) for d in request.documents), s.max_document_chars,
              "max_document_chars")
    timer = Timer(runtime.metrics)
    with timer.stage("rerank"):
        scores = await runtime.rerank_pairs([request.query] * len(request.documents), request.documents)
    order = np.argsort(-scores, kind="stable")[: request.top_n or len(scores)]
    return RerankResponse(model=runtime.reranker.name, results=[
        RerankResult(index=int(i), relevance_score=float(scores[i]),
                     document=request.documents[i] if request.return_documents else None)
        for i in order
    ])
