"""The FastAPI app factory: :func:`create_app` wires the config's chat models, embedder and memory into
the OpenAI-compatible routes, the memory REST API, ``/mcp`` (memory as an MCP server) and the operational
endpoints.

Dependencies are injectable (``chat``, ``embedder``, ``memory``) so tests and embedding applications can
pass their own; whatever the factory builds itself it also closes on shutdown. In front of the FastAPI
app's own stack sits one ASGI layer, the front door (:mod:`._front`): request id, access log and metrics,
the Host and Origin checks, CORS (only when origins are configured), the guard (authentication, per-key
request limits and the body limits, before any body byte is read), then the hot routes (chat completions,
responses) served without FastAPI's routing and dependency layers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mindgate import __version__
from mindgate.config import MindgateConfig
from mindgate.gateway import _routes_completions as routes_completions
from mindgate.gateway import _routes_health as routes_health
from mindgate.gateway import _routes_memory as routes_memory
from mindgate.gateway import _routes_openai as routes_openai
from mindgate.gateway import _routes_responses as routes_responses
from mindgate.gateway import _ui as ui
from mindgate.gateway._auth import KeyRing
from mindgate.gateway._front import Front, HotRoute
from mindgate.gateway._guard import BodyLimits
from mindgate.gateway._mcp_http import McpEndpoint
from mindgate.gateway._observability import Metrics
from mindgate.gateway._responses import install_error_handlers
from mindgate.gateway._schemas import ChatCompletionRequest, MemorySearchRequest
from mindgate.gateway._schemas_responses import ResponsesRequest
from mindgate.gateway._state import Gateway
from mindgate.mcp._client import ToolServers, list_all
from mindgate.mcp._toolloop import ToolLoopCall
from mindgate.mcp._tools import MemoryTools
from mindgate.memory._memory import AsyncMemory
from mindgate.pipeline._build import memory_for, memory_model_name, pipeline_for
from mindgate.pipeline._conversations import ResponseLog
from mindgate.providers import create_embedder
from mindgate.providers._base import ChatModel, Embedder
from mindgate.routing._targets import ChatTargets, build_targets

log = logging.getLogger("mindgate.gateway")


def build_gateway(config: MindgateConfig, *, chat: ChatModel | ChatTargets | None = None,
                  embedder: Embedder | None = None, memory: AsyncMemory | None = None) -> Gateway:
    """Build what is not given from ``config``, sharing one embedder (memory, embeddings, semantic routes)
    and, when the config's ``llm`` is what the default chain serves, one chat model (chat and memory
    extraction), so no model is loaded twice."""
    owned: list[Any] = []
    if embedder is None:
        if memory is not None:
            embedder = memory.embedder
        else:
            embedder = create_embedder(config.embedder.provider, config.embedder.config)
            owned.append(embedder)
    if chat is None:
        targets = build_targets(config, embedder)
        owned.append(targets)
    else:
        targets = chat if isinstance(chat, ChatTargets) else ChatTargets(chat)
    if memory is None:
        memory = memory_for(config, embedder, targets)
        owned.append(memory)
    metrics = Metrics()
    servers = ToolServers(config.mcp_servers) if config.mcp_servers else None
    if servers is not None:
        owned.append(servers)
    caller = ToolLoopCall(servers, MemoryTools(memory, frozenset({"search_memory"})), config.tool_loop)
    pipeline = pipeline_for(config, targets, memory if config.gateway.memory else None, counters=metrics,
                            caller=caller, store=memory.store)
    responses = ResponseLog(memory.store, config.gateway.response_retention_days) \
        if config.gateway.store_responses else None
    embedders = {name: create_embedder(section.provider, section.config) for name, section in config.embedders.items()}
    owned.extend(embedders.values())
    return Gateway(config=config, targets=targets, embedder=embedder, memory=memory,
                   keys=KeyRing(config.gateway.api_keys), pipeline=pipeline, metrics=metrics, responses=responses,
                   embedders=embedders, owned=owned, memory_model=memory_model_name(config, targets))


async def _warm_up(gateway: Gateway, *, freeze_heap: bool = False) -> None:
    """Load the embedder, open the store, list the model catalog and start the MCP tool servers before the
    first request (errors are logged and show in /readyz; a tool server that fails is tried again on use).
    With ``freeze_heap``, everything alive then is moved out of the garbage collector's view afterwards
    (:func:`_freeze_heap`)."""
    await _start_parts(gateway)
    if freeze_heap:
        _freeze_heap()


def _freeze_heap() -> None:
    """Collect, then freeze what survives (``gc.freeze``): a later full collection scans only what requests
    made. With torch, transformers and the app loaded, the heap holds ~1M objects; under load a full
    collection every few thousand requests then stopped every request for 0.3-0.45 s (``bench/gateway.py``
    at 32 clients: stream p99 340 ms against p50 8 ms). A frozen object is still freed when its last
    reference goes, but a reference cycle among frozen objects never is: so only the long-running server
    does this, once, at start (tests build many apps in one process)."""
    gc.collect()
    gc.freeze()
    log.debug("heap frozen after warm-up: %d objects out of the collector's view", gc.get_freeze_count())


async def _start_parts(gateway: Gateway) -> None:
    caller = gateway.pipeline.caller
    servers = caller.servers if isinstance(caller, ToolLoopCall) else None
    starting = asyncio.get_running_loop().create_task(list_all(servers, sorted(servers.configs))) \
        if servers is not None else None
    gateway.targets.refresh_catalog(force=True)
    try:
        await gateway.memory.count(user_id=routes_health.PROBE_USER)
    except Exception as exc:
        log.error("memory is not usable: %s", exc)
    if starting is not None:
        _, failures = await starting
        for name, reason in failures.items():
            log.error("MCP tool server %r is not usable yet: %s", name, reason)


class GatewayApp(FastAPI):
    """The FastAPI app with the front door (:mod:`._front`) outside its middleware stack."""

    front_options: dict[str, Any]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP requests go straight to the front door, past FastAPI's per-request check for configured
        OpenTelemetry providers: the gateway has its own metrics and access log, and the front door
        already serves its hot routes outside FastAPI's stack. Lifespan and websockets take FastAPI's
        own path."""
        if scope["type"] != "http" or self.root_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        gateway: Gateway = self.state.gateway
        hot = [HotRoute("/v1/chat/completions", ChatCompletionRequest, routes_openai.chat_completions),
               HotRoute("/v1/responses", ResponsesRequest, routes_responses.create_response),
               HotRoute("/v1/memories/search", MemorySearchRequest, routes_memory.search_memories)]
        return Front(super().build_middleware_stack(), gateway, hot=hot, **self.front_options)


def create_app(config: MindgateConfig | None = None, *, chat: ChatModel | ChatTargets | None = None,
               embedder: Embedder | None = None, memory: AsyncMemory | None = None,
               warm_up: bool = True, freeze_heap: bool = False) -> GatewayApp:
    """The gateway as an ASGI app. ``chat`` may be one :class:`ChatModel` (serving every model name) or
    :class:`ChatTargets`; anything not given is built from ``config`` (embedded defaults when None).
    ``freeze_heap`` (the server process, ``mindgate serve``): freeze the heap after the warm-up
    (:func:`_freeze_heap`)."""
    config = config or MindgateConfig.load()
    gateway = build_gateway(config, chat=chat, embedder=embedder, memory=memory)
    mcp = McpEndpoint(gateway) if config.gateway.mcp else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if gateway.writer is not None:
            gateway.writer.start()
        if warm_up:
            warm = asyncio.get_running_loop().create_task(_warm_up(gateway, freeze_heap=freeze_heap))
        try:
            async with AsyncExitStack() as stack:
                if mcp is not None:
                    await stack.enter_async_context(mcp.running())
                yield
        finally:
            if warm_up and not warm.done():
                warm.cancel()
            await gateway.aclose()

    docs = config.gateway.docs
    app = GatewayApp(title="mindgate", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible model gateway with long-term memory.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.gateway = gateway
    install_error_handlers(app)
    app.include_router(routes_openai.router)
    app.include_router(routes_responses.router)
    app.include_router(routes_completions.router)
    app.include_router(routes_memory.router)
    app.include_router(routes_health.router)
    if mcp is not None:
        app.router.routes.append(Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]))
    ui.install(app)  # the /ui dashboard (gateway/_ui.py)
    app.front_options = {"allowed_hosts": config.gateway.allowed_hosts, "cors_origins": config.gateway.cors_origins,
                         "limits": BodyLimits(config.gateway.max_body_bytes, config.gateway.body_timeout_s)}
    return app

