"""``/mcp``: the memory MCP server over streamable HTTP, on the gateway's port and API keys.

Each HTTP request is checked before the MCP SDK reads its body: the API key (the gateway's key ring),
the rate limit (by the guard) and the memory scope; the ``Origin`` check the MCP specification asks for
(browsers' DNS rebinding) is the one every route gets (:mod:`.hosts`). The scope is the key's user: a key
bound to one user acts for it; a key bound to several, or an open gateway, names the user with
``X-Mindgate-User`` (checked against the key), and ``X-Mindgate-Agent`` / ``X-Mindgate-Run`` narrow it.
Tools never take a scope argument.

The SDK's session manager runs stateless with JSON responses: every request stands alone, so the key and
scope are checked on every request and no session can outlive or change its key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.datastructures import Headers

from mindgate.errors import InvalidRequestError, MindgateError
from mindgate.gateway._guard import principal_of
from mindgate.gateway._observability import annotate
from mindgate.gateway._on_behalf import on_behalf
from mindgate.gateway._responses import mindgate_error_response
from mindgate.gateway._scoping import requested_scope
from mindgate.mcp._server import memory_server
from mindgate.mcp._tools import MemoryTools, ScopeArgs
from mindgate.pipeline._remember import ACTING_LLM
from mindgate.pipeline._scope import resolve_scope

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from mindgate.gateway._guard import Receive, Scope, Send
    from mindgate.gateway._state import Gateway

log = logging.getLogger("mindgate.gateway.mcp")

SCOPE_KEY = "mindgate.memory_scope"


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
        headers = Headers(scope=scope)
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
