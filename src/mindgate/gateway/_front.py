"""The gateway's front door: one pure ASGI layer in front of the FastAPI app that every HTTP request goes
through, in this order:

1. **observability**: the request id (the caller's ``X-Request-Id`` when sane, else a new one, returned on
   every response), timing to the last byte, metrics by route template and one JSON access-log line
   (:mod:`.observability`);
2. **Host and Origin checks** (browsers' DNS rebinding and cross-site requests: :mod:`.hosts`);
3. CORS (Starlette's middleware, only when ``gateway.cors_origins`` is set, so preflights pass unkeyed);
4. **the guard** (:mod:`.guard`): authentication, the key's request and token limits, then the body read
   within its size and time limits, before any route sees a byte;
5. **dispatch**: the hot routes (``POST /v1/chat/completions``, ``POST /v1/responses`` and
   ``POST /v1/memories/search``, the one a busy agent calls on every turn) are served
   directly: the body validated once with the route's pydantic model (``model_validate_json`` on the raw
   bytes) and the route's handler called, its errors answered as the app's exception handlers answer them.
   Everything else goes to the FastAPI app's own stack, with the body already read; so does a hot request
   whose body is not JSON or does not validate, so that its 400 is exactly FastAPI's. ``GET /healthz``
   (liveness) is answered here with its fixed body: a probe costs the event loop the least while searches
   and chats are being served, and it shows the process answers even when the app's stack is stuck (the
   FastAPI route stays for the OpenAPI document).

One layer instead of eight nested middlewares (observability, host check, guard, and FastAPI's error,
telemetry, body-limit, exception and exit-stack layers, then routing and dependency solving): the headers
are scanned once and each response message passes one wrapper. Figures: docs/openai-compat.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from mindgate.gateway._guard import BodyLimits, admit_caller, is_public, read_body, replayed
from mindgate.gateway._hosts import HostPolicy
from mindgate.gateway._observability import Metrics, new_request_id, record
from mindgate.gateway._responses import error_response, exception_response, mindgate_error_response
from mindgate.gateway._state import Gateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Any, Request], Awaitable[Response]]

log = logging.getLogger("mindgate.gateway")

_CLOSE = {"Connection": "close"}
LIVENESS_PATH = "/healthz"
_LIVENESS_BODY = b'{"status":"ok"}'
_LIVENESS_HEADERS = [(b"content-type", b"application/json"),
                     (b"content-length", str(len(_LIVENESS_BODY)).encode("ascii"))]


class _Liveness:
    """``scope["route"]`` of a liveness probe answered by the front door (metrics and logs read ``path``)."""

    path = LIVENESS_PATH


class HotRoute:
    """A route served by the front door: its path (``scope["route"]`` is this object, so metrics and logs
    name it by its path as they name FastAPI's routes by their template), the pydantic model of its body
    and its handler ``(body, request)``, the same function FastAPI's route calls."""

    def __init__(self, path: str, model: type[BaseModel], handler: Handler) -> None:
        self.path = path
        self.model = model
        self.handler = handler


def _is_json(content_type: bytes | None) -> bool:
    """Whether FastAPI would parse a body of this ``Content-Type`` as JSON (none, ``application/json`` or
    ``application/*+json``)."""
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class Front:
    """The front door (see the module docstring) around ``app``, the FastAPI app's own middleware stack."""

    def __init__(self, app: ASGIApp, gateway: Gateway, *, hot: Iterable[HotRoute],
                 allowed_hosts: Iterable[str], cors_origins: list[str], limits: BodyLimits) -> None:
        self.app = app
        self.gateway = gateway
        self.metrics: Metrics = gateway.metrics
        self.hot = {route.path: route for route in hot}
        self.hosts = HostPolicy(allowed_hosts, cors_origins)
        self.limits = limits
        self.inner: ASGIApp = self._guarded
        if cors_origins:
            self.inner = CORSMiddleware(self._guarded, allow_origins=cors_origins, allow_methods=["*"],
                                        allow_headers=["*"],
                                        expose_headers=["X-Request-Id", "Retry-After", "X-Mindgate-Route",
                                                        "X-Mindgate-Responses"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = host = origin = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"x-request-id" and rid is None:
                rid = new_request_id(value)
        rid = rid or new_request_id(None)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = rid
        header = (b"x-request-id", rid.encode("latin-1"))
        status = 500
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            problem = self.hosts.problem(host, origin, scope)
            if problem is not None:
                await mindgate_error_response(problem)(scope, receive, send_with_id)
            else:
                await self.inner(scope, receive, send_with_id)
        finally:
            record(self.metrics, scope, rid, status, sent, time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The guard, then dispatch (see the module docstring)."""
        length: int | None = None
        chunked = False
        authorization = content_type = None
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
            elif name == b"content-type":
                content_type = value
        has_body = chunked or bool(length)
        path = scope["path"]
        if not is_public(path):
            refusal = admit_caller(self.gateway, scope, path, authorization)
            if refusal is not None:
                if has_body and (chunked or (length or 0) > self.limits.drain_limit):
                    refusal.headers.update(_CLOSE)
                await refusal(scope, receive, send)
                return
        if not has_body:
            if path == LIVENESS_PATH and scope["method"] == "GET":
                scope["route"] = _Liveness
                await send({"type": "http.response.start", "status": 200, "headers": list(_LIVENESS_HEADERS)})
                await send({"type": "http.response.body", "body": _LIVENESS_BODY})
                return
            await self.app(scope, receive, send)
            return
        body = await read_body(self.limits, scope, receive, send, length)
        if body is None:
            return  # refused (too large, too slow) or the client left
        hot = self.hot.get(path) if scope["method"] == "POST" and _is_json(content_type) else None
        if hot is not None:
            try:
                parsed = hot.model.model_validate_json(body)
            except ValidationError:
                parsed = None  # FastAPI's own stack answers it, with its exact 400
            if parsed is not None:
                await self._serve(hot, parsed, scope, replayed(body, receive), send)
                return
        await self.app(scope, replayed(body, receive), send)

    async def _serve(self, hot: HotRoute, body: BaseModel, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = hot
        try:
            response = await hot.handler(body, Request(scope, receive))
        except Exception as exc:  # answered as the app's exception handlers answer it (unexpected: logged, 500)
            response = exception_response(exc, scope)
        await response(scope, receive, send)
