"""The request context, as a pure ASGI middleware (so that 500s pass through it too).

Per request: an id (``x-request-id``, kept in the log context until the log line is written), the API key
checked before a byte of the body is read, the body-size limit on the bytes actually read, a timeout
between body chunks, one metric sample and one log line, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable

from fastapi import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deps import UNAUTHORIZED, bearer_token, key_matches
from service.logs import request_id
from service.metrics import method_label
from service.runtime import Runtime

logger = logging.getLogger("service")

ErrorBuilder = Callable[..., Response]  # (status, message, path, headers=None) -> JSON error response
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    given = next((v for k, v in headers if k == b"x-request-id"), b"").decode("latin-1")
    return given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex[:16]


class RequestContext:
    def __init__(self, app: ASGIApp, runtime: Runtime, error: ErrorBuilder, guarded: list[re.Pattern]) -> None:
        self.app, self.runtime, self.error, self.guarded = app, runtime, error, guarded

    def _refusal(self, scope: Scope) -> Response | None:
        """401 or 413 decided from the headers alone, before the body is read (``guarded``: the path
        patterns of the routes that require the key)."""
        settings, path = self.runtime.settings, scope["path"]
        headers = dict(scope["headers"])
        if settings.api_key and any(pattern.match(path) for pattern in self.guarded):
            if not key_matches(bearer_token(headers.get(b"authorization")), settings.api_key):
                return self.error(401, UNAUTHORIZED, path, {"WWW-Authenticate": "Bearer"})
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > settings.max_body_bytes:
            return self.error(413, f"request body is {int(length)} bytes, over the limit of "
                                   f"{settings.max_body_bytes} (RETRIEVER_MAX_BODY_BYTES)", path)
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that counts body bytes and times out a client that stops sending."""
        settings = self.runtime.settings
        state = {"read": 0, "done": False}

        async def limited() -> Message:
            if state["done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), settings.body_timeout_s)
            except TimeoutError:
                raise HTTPException(408, f"no request body received for {settings.body_timeout_s:g} s "
                                         "(RETRIEVER_BODY_TIMEOUT_S)") from None
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
                if state["read"] > settings.max_body_bytes:
                    raise HTTPException(413, f"request body is over the limit of {settings.max_body_bytes} bytes "
                                             "(RETRIEVER_MAX_BODY_BYTES)")
            return message

        return limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope["headers"])
        token = request_id.set(rid)
        start = time.perf_counter()
        sent = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.update(status=message["status"], started=True)
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception:
            logger.exception("unhandled error")
            if sent["started"]:
                raise
            response = self.error(500, f"internal error; see the server log for request {rid}", scope["path"])
            await response(scope, receive, send_with_id)
        finally:
            self._record(scope, sent["status"], time.perf_counter() - start)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        label = getattr(scope.get("route"), "path", None) or "unmatched"  # set by the router on a match
        method = method_label(scope["method"])
        metrics = self.runtime.metrics
        metrics.requests.labels(label, method, str(status)).inc()
        metrics.latency.labels(label).observe(seconds)
        logger.info("%s %s -> %d", method, label, status,
                    extra={"method": method, "route": label, "status": status, "ms": round(seconds * 1000, 2)})
