"""``create_app(settings)``: the FastAPI application."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from retriever.errors import IndexMismatchError, IndexNotFoundError, RetrieverError
from service.api_errors import ApiPathMiddleware, error_response
from service.deps import require_api_key
from service.logs import configure_logging, request_id
from service.metrics import ServiceMetrics
from service.routes import cohere, docs, documents, embed, openai, ops, rerank, search
from service.runtime import Runtime
from service.settings import Settings

logger = logging.getLogger("service")


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return error_response(status, message, headers)  # in the shape of the API the path belongs to


class RequestContext(BaseHTTPMiddleware):
    """Request id, body-size limit, metrics and one JSON log line per request."""

    async def dispatch(self, request: Request, call_next):
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        runtime: Runtime = request.app.state.runtime
        route = request.url.path
        start = time.perf_counter()
        try:
            limit = runtime.settings.max_body_bytes
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                response = _error(413, f"request body is {length} bytes, over the limit of {limit} "
                                       "(RETRIEVER_MAX_BODY_BYTES)")
            else:
                response = await call_next(request)
        finally:
            request_id.reset(token)
        matched = request.scope.get("route")
        route = getattr(matched, "path", route) if matched else "unmatched"
        seconds = time.perf_counter() - start
        runtime.metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        runtime.metrics.latency.labels(route).observe(seconds)
        response.headers["x-request-id"] = rid
        logger.info("%s %s -> %d", request.method, route, response.status_code,
                    extra={"route": route, "status": response.status_code, "ms": round(seconds * 1000, 2)})
        return response


def create_app(settings: Settings | None = None, load: bool = True) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_json)
    runtime = Runtime(settings, ServiceMetrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if load:
            await asyncio.get_running_loop().run_in_executor(None, runtime.load_all)
        yield
        await runtime.close()

    app = FastAPI(title="retrieval-trainer service", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Dense search with calibrated relevance filtering, rerank, embeddings and "
                              "document upserts over FAISS indexes built by the `retriever` CLI.")
    app.state.runtime = runtime
    app.add_middleware(RequestContext)
    app.add_middleware(ApiPathMiddleware)

    @app.exception_handler(IndexNotFoundError)
    async def _not_found(request: Request, exc: IndexNotFoundError):
        return _error(404, str(exc))

    @app.exception_handler(IndexMismatchError)
    async def _mismatch(request: Request, exc: IndexMismatchError):
        return _error(409, str(exc))

    @app.exception_handler(RetrieverError)
    async def _bad_request(request: Request, exc: RetrieverError):
        return _error(503 if "still loading" in str(exc) else 422, str(exc))

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404/405
    async def _http(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None),
                              **getattr(exc, "details", {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return error_response(422, message, param=where or None, errors=jsonable_errors(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.exception("unhandled error")
        return _error(500, f"internal error ({type(exc).__name__}); see the server log for request "
                           f"{request_id.get()}")

    guarded = [Depends(require_api_key)]
    app.include_router(ops.probes)
    app.include_router(ops.router)
    app.include_router(docs.router)
    for module in (search, rerank, embed, openai, cohere, documents):
        app.include_router(module.router, dependencies=guarded)
    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()]
