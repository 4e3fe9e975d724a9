from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from retriever.where import FilterError, normalise
from service.deps import check_search_limits, check_texts, get_runtime
from service.runtime import Runtime, Timer
from service.schemas import SearchHit, SearchRequest, SearchResponse, SearchResult

router = APIRouter(tags=["search"])


def check_limits(request: SearchRequest, runtime: Runtime) -> None:
    """Every request limit of /search, in one place (before any work is done)."""
    check_texts(runtime, request.texts)
    check_search_limits(runtime, request)
    s = runtime.settings
    if request.top_k > s.max_top_k:
        raise HTTPException(422, f"top_k {request.top_k} is over the limit of {s.max_top_k} (RETRIEVER_MAX_TOP_K)")
    try:
        normalise(request.where)
    except FilterError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/search", response_model=SearchResponse, response_model_exclude_none=False)
async def search(request: SearchRequest, runtime: Runtime = Depends(get_runtime)) -> SearchResponse:
    """Dense, lexical or hybrid search (hybrid by default when the index has a lexical side), with an
    optional metadata filter (``where``), calibrated filtering and rerank."""
    check_limits(request, runtime)
    timer = Timer(runtime.metrics)
    live, outcome, docs, rerank_scores = await runtime.search(request, timer)
    results = []
    for row, (text, hits) in enumerate(zip(request.texts, outcome.hits, strict=True)):
        out = []
        for h in hits:
            title, body = docs.get(h.id, (None, None))
            out.append(SearchHit(id=h.id, score=h.score, relevance=h.relevance,
                                 dense_score=h.dense if outcome.mode == "hybrid" else None,
                                 lexical_score=h.lexical if outcome.mode == "hybrid" else None,
                                 rerank_score=rerank_scores.get((row, h.id)),
                                 title=title if request.return_text else None,
                                 text=body if request.return_text else None))
        if request.rerank:
            head = sorted(out[: request.rerank_depth], key=lambda hit: -hit.rerank_score)
            out = head + out[request.rerank_depth:]
        results.append(SearchResult(query=text, hits=out[: request.top_k]))
    return SearchResponse(index=live.name, mode=outcome.mode, fusion=outcome.fusion, calibrated=outcome.calibrated,
                          threshold=outcome.threshold if request.filter == "calibrated" else None,
                          results=results, timings_ms=timer.ms)
