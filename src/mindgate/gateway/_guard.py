"""The guard: authentication, per-key request limits and the body limits, for every route, before any
body byte is read.

:class:`Guard` is a pure ASGI middleware inside observability and CORS and outside the routes, so a route
added later (OpenAI, memory, dashboard, MCP, docs, metrics) is covered without doing anything. For each
HTTP request that is not public it

1. authenticates the ``Authorization`` header (a 401 costs one SHA-256 and a few comparisons: no body
   byte is read, no JSON parsed) and leaves the principal in the ASGI scope (``state["principal"]``,
   read back by :meth:`~mindgate.gateway._state.Gateway.authenticate` and :func:`principal_of`);
2. counts the request against the key's ``requests_per_minute``, and for the model routes checks its
   ``tokens_per_minute`` bucket, before validation, so invalid requests count too;
3. reads the body with the size limit enforced while it arrives (a declared ``Content-Length`` over the
   limit is refused unread; a chunked body is cut off at the limit) and within ``body_timeout_s`` (a
   trickled or half-sent body is a 408), then hands the app the buffered body.

A refusal of a request whose body was not read and may be large says ``Connection: close``, so the server
does not read and discard what the client still sends.

Public (no key): ``/healthz``, ``/readyz`` and the dashboard's static shell (``/ui``, ``/ui/static/*``),
which holds no data. Everything else, ``/docs``, ``/redoc``, ``/openapi.json`` and ``/metrics`` included,
follows the key policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mindgate.errors import MindgateError
from mindgate.gateway._auth import Principal
from mindgate.gateway._observability import annotate, request_id
from mindgate.gateway._responses import error_response, mindgate_error_response
from mindgate.gateway._state import PRINCIPAL, Gateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("mindgate.gateway")

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/ui", "/ui/"})
PUBLIC_PREFIXES = ("/ui/static/",)
# routes whose requests are model calls: refused up front while the key's token bucket is in debt
MODEL_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"})
# an unread body larger than this is not drained after a refusal: the connection is closed instead
DRAIN_LIMIT = 64 * 1024
_CLOSE = {"Connection": "close"}


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def principal_of(scope: Scope) -> Principal | None:
    """The principal the guard authenticated for this request (None when keys are off)."""
    principal: Principal | None = scope.get("state", {}).get(PRINCIPAL)
    return principal


class _BodyTimeout(Exception):
    pass


class Guard:
    """ASGI middleware: authenticate, count, then read the body within its size and time limits."""

    def __init__(self, app: ASGIApp, gateway: Gateway, *, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        authorization: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                text = value.decode("latin-1")
                if not text.isdigit():
                    await error_response(400, f"invalid Content-Length header {text[:40]!r}",
                                         headers=_CLOSE)(scope, receive, send)
                    return
                length = int(text)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        has_body = chunked or bool(length)
        unread_headers = _CLOSE if chunked or (length or 0) > DRAIN_LIMIT else {}
        if not is_public(scope["path"]):
            try:
                principal = self.gateway.keys.authenticate(authorization)
                scope.setdefault("state", {})[PRINCIPAL] = principal
                if principal is not None:
                    annotate(scope, key=principal.name)
                    self.gateway.admit_request(principal)
                    if scope["path"] in MODEL_ROUTES:
                        self.gateway.admit(principal, uses_tokens=True)
            except MindgateError as exc:
                response = mindgate_error_response(exc)
                response.headers.update(unread_headers if has_body else {})
                await response(scope, receive, send)
                return
        if not has_body:
            await self.app(scope, receive, send)
            return
        if length is not None and length > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except _BodyTimeout:
            log.info("request %s: body not complete within %.1fs, closing", request_id(scope), self.body_timeout_s)
            await error_response(408, f"the request body did not arrive within {self.body_timeout_s:g}s",
                                 code="request_timeout", headers=_CLOSE)(scope, receive, send)
            return
        if body is None:
            return  # the client went away
        if len(body) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or as much as exceeds the limit by one chunk; None when the client left."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return None
                    chunk = message.get("body", b"")
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.max_body_bytes or not message.get("more_body", False):
                        break
        except TimeoutError:
            raise _BodyTimeout from None
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"request body exceeds the gateway limit of {self.max_body_bytes} bytes",
                                  code="request_too_large", headers=_CLOSE)
        await response(scope, receive, send)
