"""Dependencies shared by the routes: the runtime, the API key and request limits."""

from __future__ import annotations

import secrets

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.runtime import Runtime

bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def require_api_key(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    runtime: Runtime = Depends(get_runtime),
) -> None:
    expected = runtime.settings.api_key
    if not expected:
        return
    if credentials is None or not secrets.compare_digest(credentials.credentials, expected):
        raise HTTPException(401, "missing or invalid API key (Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})


def too_large(what: str, value: int, limit: int, setting: str) -> None:
    if value > limit:
        raise HTTPException(413, f"{what} is {value}, over the limit of {limit} (RETRIEVER_{setting.upper()})")


def check_texts(runtime: Runtime, texts: list[str], what: str = "queries") -> None:
    s = runtime.settings
    too_large(f"number of {what}", len(texts), s.max_batch, "max_batch")
    longest = max((len(t) for t in texts), default=0)
    too_large(f"longest of the {what} (characters)", longest, s.max_query_chars, "max_query_chars")
