"""Error responses in the shape of the API a path belongs to.

- OpenAI (``/v1/embeddings``, ``/v1/models``, any other ``/v1/...`` but Cohere's): ``{"error": {"message",
  "type", "param", "code"}}``, with 422 answered as 400 as OpenAI does.
- Cohere (``/v1/rerank``, ``/v1/embed``, ``/v2/...``): ``{"id", "message"}``, 422 answered as 400.
- TEI's routes (``/embed``, ``/rerank``, ``/``): ours plus TEI's ``error`` and ``error_type`` keys.
- Everything else: ours, ``{"detail", "request_id"}`` (validation errors add ``errors``).

The path comes from :data:`api_path`, set per request by :class:`ApiPathMiddleware`, so that error
handlers anywhere in the stack (including the body-size check in the request middleware) can use it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Literal

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from service.logs import request_id

api_path: ContextVar[str] = ContextVar("api_path", default="")

Api = Literal["openai", "cohere", "tei", "ours"]
COHERE_PATHS = ("/v1/rerank", "/v1/embed")
TEI_PATHS = ("/embed", "/rerank", "/")
OPENAI_TYPES = {401: "invalid_request_error", 403: "invalid_request_error", 404: "invalid_request_error",
                429: "rate_limit_exceeded", 503: "server_error"}
OPENAI_CODES = {401: "invalid_api_key", 404: "not_found", 413: "request_too_large", 429: "rate_limit_exceeded"}


class ClientError(HTTPException):
    """An HTTP error that also names the request field at fault (OpenAI's ``param``) and a ``code``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(status, message)
        self.details = {"param": param, "code": code}


def api_of(path: str) -> Api:
    if path in COHERE_PATHS or path.startswith("/v2/"):
        return "cohere"
    if path.startswith("/v1/"):
        return "openai"
    if path in TEI_PATHS:
        return "tei"
    return "ours"


def error_body(path: str, status: int, message: str, *, param: str | None = None, code: str | None = None,
               errors: list[dict] | None = None) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` of an error on ``path``."""
    api = api_of(path)
    if api == "openai":
        status = 400 if status == 422 else status
        kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return status, {"error": {"message": message, "type": kind, "param": param,
                                  "code": code or OPENAI_CODES.get(status)}}
    if api == "cohere":
        return (400 if status == 422 else status), {"id": request_id.get(), "message": message}
    body: dict[str, Any] = {"detail": message, "request_id": request_id.get()}
    if errors is not None:
        body["errors"] = errors
    if api == "tei":
        body |= {"error": message, "error_type": _tei_type(status)}
    return status, body


def _tei_type(status: int) -> str:
    if status in (429, 503):
        return "Overloaded"
    return "Backend" if status >= 500 else "Validation"


def error_response(status: int, message: str, headers: dict | None = None, **details: Any) -> JSONResponse:
    """The error response for the current request's path (see :func:`error_body`)."""
    status, body = error_body(api_path.get(), status, message, **details)
    return JSONResponse(body, status_code=status, headers=headers)


class ApiPathMiddleware:
    """Pure ASGI middleware (outermost): records the request path for :func:`error_response`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            api_path.set(scope.get("path", ""))
        await self.app(scope, receive, send)
