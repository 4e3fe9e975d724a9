"""Dependencies shared by the routes: the runtime, the API key and request limits."""

from __future__ import annotations

import secrets

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.runtime import Runtime

bearer = HTTPBearer(auto_error=False)
UNAUTHORIZED = "missing or invalid API key (Authorization: Bearer <key>)"


async def get_runtime(request: Request) -> Runtime:
    """Async on purpose, like every dependency here: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop (and a GIL hand-off) per request for a field read."""
    return request.app.state.runtime


def key_matches(token: bytes | None, expected: str) -> bool:
    """Constant-time comparison of raw bytes: a non-ASCII header byte or key is a mismatch, never a 500."""
    return token is not None and secrets.compare_digest(token, expected.encode("utf-8"))


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The token of a raw ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


async def require_api_key(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    """Declares the bearer scheme in OpenAPI; the middleware has already checked the key before the body was read."""
    expected = runtime.settings.api_key
    if not expected:
        return
    token = credentials.credentials.encode("latin-1") if credentials else None  # headers arrive latin-1 decoded
    if not key_matches(token, expected):
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def too_large(what: str, value: int, limit: int, setting: str) -> None:
    if value > limit:
        raise HTTPException(413, f"{what} is {value}, over the limit of {limit} (RETRIEVER_{setting.upper()})")


def check_texts(runtime: Runtime, texts: list[str], what: str = "queries") -> None:
    s = runtime.settings
    too_large(f"number of {what}", len(texts), s.max_batch, "max_batch")
    longest = max((len(t) for t in texts), default=0)
    too_large(f"longest of the {what} (characters)", longest, s.max_query_chars, "max_query_chars")


def check_search_limits(runtime: Runtime, request) -> None:
    """Limits of a search request beyond its schema: the answer's size (``queries x top_k`` hits, each
    may carry a document's text), the pairs reranked (``queries x rerank_depth``) and ``rerank_depth``,
    whether or not ``rerank`` is on (as the schema says)."""
    s = runtime.settings
    too_large("number of hits asked for (queries x top_k)", len(request.texts) * request.top_k,
              s.max_total_hits, "max_total_hits")
    if request.rerank:
        too_large("number of pairs to rerank (queries x rerank_depth)", len(request.texts) * request.rerank_depth,
                  s.max_total_hits, "max_total_hits")
    if request.rerank_depth > s.max_rerank_documents:
        raise HTTPException(422, f"rerank_depth {request.rerank_depth} is over the limit of "
                                 f"{s.max_rerank_documents} (RETRIEVER_MAX_RERANK_DOCUMENTS)")
