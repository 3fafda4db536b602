"""The FastAPI app factory: :func:`create_app` wires the config's chat models, embedder and memory into
the OpenAI-compatible routes, the memory REST API and the operational endpoints.

Dependencies are injectable (``chat``, ``embedder``, ``memory``) so tests and embedding applications can
pass their own; whatever the factory builds itself it also closes on shutdown. Middleware, outermost
first: observability (request id, access log, metrics), CORS (only when origins are configured), the guard
(authentication, per-key request limits and the body limits, before any body byte is read: :mod:`.guard`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from mindgate import __version__
from mindgate.config import MindgateConfig
from mindgate.gateway import routes_health, routes_memory, routes_openai, ui
from mindgate.gateway.auth import KeyRing
from mindgate.gateway.guard import Guard
from mindgate.gateway.memory_chat import MemoryWriter
from mindgate.gateway.observability import Observability
from mindgate.gateway.responses import install_error_handlers
from mindgate.gateway.state import Gateway
from mindgate.gateway.targets import ChatTargets, build_targets
from mindgate.memory.memory import AsyncMemory
from mindgate.memory.stores import create_store
from mindgate.providers import chat_model_from_section, create_embedder
from mindgate.providers.base import ChatModel, Embedder

log = logging.getLogger("mindgate.gateway")


def _shares_llm(config: MindgateConfig) -> bool:
    """Whether the config's ``llm`` section is what the default chain serves."""
    return config.routing.default == "auto" and "auto" not in config.routing.chains


def memory_model_name(config: MindgateConfig, targets: ChatTargets) -> str:
    """The name memory extraction's model goes by for key bindings: the default chain's when memory shares
    it, else the ``llm`` section's model (or its provider's name when it names no model)."""
    if _shares_llm(config):
        return targets.default_name
    return config.llm.config.model or config.llm.provider


def memory_for(config: MindgateConfig, embedder: Embedder, targets: ChatTargets) -> AsyncMemory:
    """The configured memory over ``embedder``. Its LLM (for ``add(infer=True)``) is the default chat model
    when the config's ``llm`` section is what that chain serves, so the model is not loaded twice."""
    shares_llm = _shares_llm(config)
    default = targets.default

    def llm() -> ChatModel:
        return default if shares_llm else chat_model_from_section(config.llm)

    return AsyncMemory(embedder=embedder, store=create_store(config.vector_store), llm=llm, settings=config.memory,
                       expected_dims=config.vector_store.config.embedding_model_dims)


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
    keys = KeyRing(config.gateway.api_keys)
    gateway = Gateway(config=config, targets=targets, embedder=embedder, memory=memory, keys=keys, owned=owned,
                      memory_model=memory_model_name(config, targets))
    if config.gateway.memory:
        gateway.writer = MemoryWriter(memory, gateway.metrics)
    return gateway


async def _warm_up(gateway: Gateway) -> None:
    """Load the embedder, open the store and list the model catalog before the first request (errors are
    logged and show in /readyz)."""
    gateway.targets.refresh_catalog(force=True)
    try:
        await gateway.memory.count(user_id=routes_health.PROBE_USER)
    except Exception as exc:
        log.error("memory is not usable: %s", exc)


def create_app(config: MindgateConfig | None = None, *, chat: ChatModel | ChatTargets | None = None,
               embedder: Embedder | None = None, memory: AsyncMemory | None = None,
               warm_up: bool = True) -> FastAPI:
    """The gateway as an ASGI app. ``chat`` may be one :class:`ChatModel` (serving every model name) or
    :class:`ChatTargets`; anything not given is built from ``config`` (embedded defaults when None)."""
    config = config or MindgateConfig.load()
    gateway = build_gateway(config, chat=chat, embedder=embedder, memory=memory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if gateway.writer is not None:
            gateway.writer.start()
        if warm_up:
            warm = asyncio.get_running_loop().create_task(_warm_up(gateway))
        try:
            yield
        finally:
            if warm_up and not warm.done():
                warm.cancel()
            await gateway.aclose()

    docs = config.gateway.docs
    app = FastAPI(title="mindgate", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible model gateway with long-term memory.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.gateway = gateway
    install_error_handlers(app)
    app.include_router(routes_openai.router)
    app.include_router(routes_memory.router)
    app.include_router(routes_health.router)
    ui.install(app)  # the /ui dashboard (gateway/ui.py)
    app.add_middleware(Guard, gateway=gateway, max_body_bytes=config.gateway.max_body_bytes,
                       body_timeout_s=config.gateway.body_timeout_s)
    if config.gateway.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.gateway.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Request-Id", "Retry-After"])
    app.add_middleware(Observability, metrics=gateway.metrics)
    return app

