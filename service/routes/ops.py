from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from retriever.rerank.registry import is_cross_encoder
from service.deps import get_runtime
from service.runtime import Runtime
from service.schemas import ReloadRequest
from service.served import tei_info

probes = APIRouter(tags=["health"])
router = APIRouter(tags=["operations"])


@probes.get("/health")
async def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@probes.get("/ready", responses={503: {"description": "Still loading",
                                     "content": {"application/json": {"example": {"status": "loading"}}}}})
async def ready(runtime: Runtime = Depends(get_runtime)):
    """Readiness: every index and model is loaded."""
    if not runtime.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return {"status": "ready", "indexes": list(runtime.indexes)}


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"description": "Prometheus text exposition format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(runtime: Runtime = Depends(get_runtime)) -> Response:
    """Prometheus metrics (``text/plain; version=...``)."""
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/info")
async def info(runtime: Runtime = Depends(get_runtime)) -> dict:
    """Models, index manifests, adapters and the reranker; plus TEI's /info fields for the default index."""
    return tei_info(runtime) | {
        "indexes": {
            name: {
                "manifest": live.manifest.model_dump(),
                "documents": len(live.index),
                "query_model": live.encoder.query.model_id,
                "document_model": live.encoder.document.model_id,
                "adapter": live.relevance.info if live.relevance else None,
                "calibrated": live.relevance is not None,
                "gpu": live.index.on_gpu,
            }
            for name, live in runtime.indexes.items()
        },
        "reranker": runtime.reranker.name if runtime.reranker else None,
        "reranker_is_cross_encoder": is_cross_encoder(runtime.settings.reranker),
        "limits": runtime.settings.model_dump(include={"max_query_chars", "max_batch", "max_top_k",
                                                       "max_rerank_documents", "max_document_chars",
                                                       "max_total_hits", "max_body_bytes"}),
    }


@router.post("/admin/reload")
async def reload(request: ReloadRequest | None = None, runtime: Runtime = Depends(get_runtime)) -> dict:
    """Swap in the index's newest saved version without downtime."""
    live = await runtime.reload(request.index if request else None)
    return {"index": live.name, "version": live.manifest.version, "documents": len(live.index)}
