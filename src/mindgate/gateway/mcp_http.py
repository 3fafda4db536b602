"""``/mcp``: the memory MCP server over streamable HTTP, on the gateway's port and API keys.

Each HTTP request is checked before the MCP SDK reads its body: the API key (the gateway's key ring),
the rate limit, the ``Origin`` (browsers' DNS-rebinding defence the MCP specification asks for), and the
memory scope. The scope is the key's user: a key bound to one user acts for it; a key bound to several,
or an open gateway, names the user with ``X-Mindgate-User`` (checked against the key), and
``X-Mindgate-Agent`` / ``X-Mindgate-Run`` narrow it. Tools never take a scope argument.

The SDK's session manager runs stateless with JSON responses: every request stands alone, so the key and
scope are checked on every request and no session can outlive or change its key.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.datastructures import Headers

from mindgate.errors import InvalidRequestError, MindgateError, PermissionDeniedError
from mindgate.gateway.guard import principal_of
from mindgate.gateway.observability import annotate
from mindgate.gateway.on_behalf import on_behalf
from mindgate.gateway.responses import mindgate_error_response
from mindgate.gateway.scoping import requested_scope
from mindgate.mcp.server import memory_server
from mindgate.mcp.tools import MemoryTools, ScopeArgs
from mindgate.pipeline.remember import ACTING_LLM
from mindgate.pipeline.scope import resolve_scope

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from mindgate.gateway.guard import Receive, Scope, Send
    from mindgate.gateway.state import Gateway

log = logging.getLogger("mindgate.gateway.mcp")

SCOPE_KEY = "mindgate.memory_scope"


def _loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_origin(headers: Headers, allowed: list[str]) -> None:
    """A browser request (one with ``Origin``) must come from a loopback page or a configured CORS origin."""
    origin = headers.get("origin")
    if origin is None or origin in allowed or "*" in allowed:
        return
    if not _loopback(urlsplit(origin).hostname or ""):
        raise PermissionDeniedError(f"requests to /mcp from the web origin {origin!r} are refused",
                                    hint="add the origin to gateway.cors_origins if it is yours")


def _scope_of(ctx: ServerRequestContext[Any]) -> ScopeArgs:
    request = ctx.request
    scope: ScopeArgs = getattr(request, "scope", {}).get(SCOPE_KEY, {})
    return scope


class McpEndpoint:
    """The ASGI app at ``/mcp``. :meth:`running` must wrap the app's lifetime (it runs the SDK's session
    manager, which is built anew each time so the app's lifespan can run more than once)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.server = memory_server(MemoryTools(gateway.memory), _scope_of)
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        manager = StreamableHTTPSessionManager(app=self.server, json_response=True, stateless=True,
                                               max_request_body_size=self.gateway.config.gateway.max_body_bytes)
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    def _admit(self, scope: Scope) -> ScopeArgs:
        gateway = self.gateway
        headers = Headers(scope=scope)
        check_origin(headers, gateway.config.gateway.cors_origins)
        principal = principal_of(scope)  # authenticated and counted by the guard before any body byte
        memory = resolve_scope(requested_scope(headers, None, None), principal, enabled=True)
        annotate(scope, key=principal.name if principal else None, user=memory.user_id if memory else None)
        if memory is None:
            raise InvalidRequestError("/mcp acts for one user and this request names none",
                                      hint="use an API key bound to one user, or send the X-Mindgate-User header")
        return memory.kwargs()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            scope[SCOPE_KEY] = self._admit(scope)
        except MindgateError as exc:
            await mindgate_error_response(exc)(scope, receive, send)
            return
        if self._manager is None:
            log.error("/mcp was called outside the gateway's lifespan")
            raise RuntimeError("the MCP session manager is not running")
        gateway, principal = self.gateway, principal_of(scope)
        token = ACTING_LLM.set(None if principal is None else
                               lambda llm: on_behalf(gateway, principal, llm, gateway.memory_model))
        try:
            await self._manager.handle_request(scope, receive, send)
        finally:
            ACTING_LLM.reset(token)
