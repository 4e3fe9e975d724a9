"""``create_app(settings)``: the FastAPI application."""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from retriever.errors import IndexMismatchError, IndexNotFoundError, NotCalibratedError, NotReadyError, RetrieverError
from retriever.lexical import NoLexicalSideError
from service.api_errors import ApiPathMiddleware, api_path, error_body
from service.deps import require_api_key
from service.logs import configure_logging
from service.metrics import ServiceMetrics
from service.middleware import RequestContext
from service.openapi import error_responses, install_openapi
from service.routes import cohere, docs, documents, embed, openai, ops, rerank, search
from service.runtime import Runtime
from service.settings import Settings

logger = logging.getLogger("service")
_FIELD = re.compile(r"[a-z_][a-z0-9_]*|\d+")


def _error(status: int, message: str, path: str = "", headers: dict | None = None,
           errors: list[dict] | None = None, **details) -> JSONResponse:
    """The one place that builds an error body, in the shape of the API the path belongs to
    (service/api_errors.py): ours is ``{"detail", "request_id"}`` (+ ``errors`` for a 422)."""
    status, body = error_body(path or api_path.get(), status, message, errors=errors, **details)
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    """One sentence for the most specific error: ``top_k: Input should be a valid integer``."""
    errors = exc.errors() or [{"loc": (), "msg": "invalid request"}]
    first = max(errors, key=lambda e: len(e.get("loc", ())))  # in a union, the branch that got furthest
    loc = [str(p) for p in first.get("loc", ())]
    loc = loc[1:] if loc[:1] == ["body"] else loc
    if first.get("type") == "json_invalid":
        return f"{first['msg']} ({first.get('ctx', {}).get('error', 'malformed JSON')}, character {'.'.join(loc)})"
    # drop union-branch tags (``MinRelevance``, ``literal[...]``) from inside the path, keep the field named last
    loc = [p for p in loc[:-1] if _FIELD.fullmatch(p)] + loc[-1:]
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(loc)}: {message}" if loc else message


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

    @app.exception_handler(IndexNotFoundError)
    async def _not_found(request: Request, exc: IndexNotFoundError):
        return _error(404, str(exc), request.url.path)

    @app.exception_handler(IndexMismatchError)
    async def _mismatch(request: Request, exc: IndexMismatchError):
        return _error(409, str(exc), request.url.path)

    @app.exception_handler(NotCalibratedError)  # valid request, but the index lacks what it needs
    async def _not_calibrated(request: Request, exc: NotCalibratedError):
        return _error(409, str(exc), request.url.path)

    @app.exception_handler(NoLexicalSideError)  # the same: lexical/hybrid on an index without a lexical side
    async def _no_lexical(request: Request, exc: NoLexicalSideError):
        return _error(409, str(exc), request.url.path)

    @app.exception_handler(NotReadyError)
    async def _not_ready(request: Request, exc: NotReadyError):
        return _error(503, str(exc), request.url.path)

    @app.exception_handler(RetrieverError)
    async def _bad_request(request: Request, exc: RetrieverError):
        return _error(422, str(exc), request.url.path)

    @app.exception_handler(HTTPException)  # Starlette's: also unknown paths (404) and methods (405)
    async def _http(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), request.url.path, getattr(exc, "headers", None),
                      **getattr(exc, "details", {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message = validation_message(exc)
        param = message.split(": ", 1)[0] if ": " in message else None
        return _error(422, message, request.url.path, errors=jsonable_errors(exc), param=param)

    guarded = [Depends(require_api_key)] if settings.api_key else []  # OpenAPI declares Bearer only when set
    responses = error_responses(bool(settings.api_key))
    app.include_router(ops.probes)
    app.include_router(docs.router)
    routers = [ops.router] + [module.router for module in (search, rerank, embed, openai, cohere, documents)]
    for router in routers:
        app.include_router(router, dependencies=guarded, responses=responses)
    # the middleware checks the key of these routes before their body is read
    app.add_middleware(RequestContext, runtime=runtime, error=_error,
                       guarded=[route.path_regex for router in routers for route in router.routes])
    app.add_middleware(ApiPathMiddleware)  # outermost: error bodies know the API of the path
    install_openapi(app, settings, runtime)
    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()]
