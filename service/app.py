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


# domain errors and their status: a valid request the index cannot serve is a 409, not yet loaded a 503
_ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (IndexNotFoundError, 404),
    (IndexMismatchError, 409),
    (NotCalibratedError, 409),  # valid request, but the index lacks what it needs
    (NoLexicalSideError, 409),  # the same: lexical/hybrid on an index without a lexical side
    (NotReadyError, 503),
    (RetrieverError, 422),
)


def _status_handler(status: int):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return _error(status, str(exc), request.url.path)
    return handle


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's HTTPException: also unknown paths (404) and methods (405)."""
    return _error(exc.status_code, str(exc.detail), request.url.path, getattr(exc, "headers", None),
                  **getattr(exc, "details", {}))


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    message = validation_message(exc)
    param = message.split(": ", 1)[0] if ": " in message else None
    return _error(422, message, request.url.path, errors=jsonable_errors(exc), param=param)


def _install_error_handlers(app: FastAPI) -> None:
    for exc_type, status in _ERROR_STATUS:
        app.add_exception_handler(exc_type, _status_handler(status))
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _invalid)


def _install_routes(app: FastAPI, settings: Settings, runtime: Runtime) -> None:
    """The routers (all but probes and docs behind the API key, when set) and the middleware."""
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
    _install_error_handlers(app)
    _install_routes(app, settings, runtime)
    install_openapi(app, settings, runtime)
    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()]
