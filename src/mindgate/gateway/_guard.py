"""The guard: authentication, per-key request limits and the body limits, for every route, before any
body byte is read.

The front door (:mod:`._front`, the one ASGI layer outside the routes) runs it for every HTTP request, so
a route added later (OpenAI, memory, dashboard, MCP, docs, metrics) is covered without doing anything. For
each request that is not public it

1. authenticates the ``Authorization`` header (a 401 costs one SHA-256 and a few comparisons: no body
   byte is read, no JSON parsed) and leaves the principal in the ASGI scope (``state["principal"]``,
   read back by :meth:`~mindgate.gateway._state.Gateway.authenticate` and :func:`principal_of`);
2. counts the request against the key's ``requests_per_minute``, and for the model routes checks its
   ``tokens_per_minute`` bucket, before validation, so invalid requests count too
   (:func:`admit_caller`);
3. reads the body with the size limit enforced while it arrives (a declared ``Content-Length`` over the
   limit is refused unread; a chunked body is cut off at the limit) and within ``body_timeout_s`` (a
   trickled or half-sent body is a 408), then hands the app the buffered body (:func:`read_body`).

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
from dataclasses import dataclass
from typing import Any

from mindgate.errors import MindgateError
from mindgate.gateway._auth import Principal
from mindgate.gateway._observability import annotate, request_id
from mindgate.gateway._responses import JSONBytes, error_response, mindgate_error_response
from mindgate.gateway._state import PRINCIPAL, Gateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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


@dataclass(frozen=True)
class BodyLimits:
    """How large a body may be and how long it may take to arrive; an unread body over ``drain_limit`` is
    not drained after a refusal (the connection is closed instead)."""

    max_body_bytes: int
    body_timeout_s: float
    drain_limit: int = DRAIN_LIMIT


def admit_caller(gateway: Gateway, scope: Scope, path: str, authorization: str | None) -> JSONBytes | None:
    """Authenticate and count the request (steps 1-2); the refusal to send, or None when it may go on."""
    try:
        principal = gateway.keys.authenticate(authorization)
        scope.setdefault("state", {})[PRINCIPAL] = principal
        if principal is not None:
            annotate(scope, key=principal.name)
            gateway.admit_request(principal)
            if path in MODEL_ROUTES:
                gateway.admit(principal, uses_tokens=True)
    except MindgateError as exc:
        return mindgate_error_response(exc)
    return None


async def read_body(limits: BodyLimits, scope: Scope, receive: Receive, send: Send,
                    length: int | None) -> bytes | None:
    """The whole body (step 3) of a request that declared ``length`` bytes (None: chunked); None when it
    was refused here (413, 408: already answered) or the client went away."""
    if length is not None and length > limits.max_body_bytes:
        await _too_large(limits, scope, receive, send)
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                if size > limits.max_body_bytes or not message.get("more_body", False):
                    break
    except TimeoutError:
        log.info("request %s: body not complete within %.1fs, closing", request_id(scope), limits.body_timeout_s)
        await error_response(408, f"the request body did not arrive within {limits.body_timeout_s:g}s",
                             code="request_timeout", headers=_CLOSE)(scope, receive, send)
        return None
    if size > limits.max_body_bytes:
        await _too_large(limits, scope, receive, send)
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replayed(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the connection's own messages."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(limits: BodyLimits, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(413, f"request body exceeds the gateway limit of {limits.max_body_bytes} bytes",
                              code="request_too_large", headers=_CLOSE)
    await response(scope, receive, send)
