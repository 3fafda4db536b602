"""The gateway's shared state: the objects every request handler uses (``app.state.gateway``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fastapi import Request

from mindgate.config import MindgateConfig
from mindgate.errors import InvalidRequestError, TooManyRequestsError
from mindgate.gateway._auth import KeyRing, Principal
from mindgate.gateway._limits import RateLimiter
from mindgate.gateway._observability import Metrics
from mindgate.memory._memory import AsyncMemory
from mindgate.pipeline._conversations import ResponseLog
from mindgate.pipeline._core import Pipeline
from mindgate.pipeline._remember import MemoryWriter
from mindgate.providers._base import Embedder
from mindgate.routing._targets import ChatTargets

log = logging.getLogger("mindgate.gateway")

PRINCIPAL = "principal"  # the key in the ASGI scope's ``state`` where the guard leaves the principal


@dataclass
class Gateway:
    """Everything a request handler needs, shared by all requests (``app.state.gateway``)."""

    config: MindgateConfig
    targets: ChatTargets
    embedder: Embedder
    memory: AsyncMemory
    keys: KeyRing
    pipeline: Pipeline
    limiter: RateLimiter = field(default_factory=RateLimiter)
    metrics: Metrics = field(default_factory=Metrics)
    responses: ResponseLog | None = None
    embedders: dict[str, Embedder] = field(default_factory=dict)
    owned: list[Any] = field(default_factory=list)
    # the model name memory extraction runs under: what a key must be allowed to use for infer=true
    memory_model: str = "auto"

    @cached_property
    def responses_api_configured(self) -> bool:
        """Whether a provider section of the config asks for a server's own /v1/responses (``responses_api``
        other than ``bridge``); read once, since every Responses request asks."""
        sections = [self.config.llm, *self.config.providers.values()]
        return any(getattr(s.config, "responses_api", "bridge") != "bridge" for s in sections)

    @property
    def writer(self) -> MemoryWriter | None:
        """The pipeline's background memory writer (None when memory-augmented chat is off)."""
        return self.pipeline.writer

    def embedder_for(self, model: str) -> Embedder:
        """The embedder an embeddings request names: a named one (``embedders`` in the config), or the
        default (``default`` or its model id). Without named embedders every name gets the default (clients
        written for OpenAI send its model names); with them, another name is a 400 listing the choices."""
        if not self.embedders:
            return self.embedder
        named = self.embedders.get(model)
        if named is not None:
            return named
        if model in ("default", self.embedder.model):
            return self.embedder
        choices = ", ".join([f"default ({self.embedder.model})", *sorted(self.embedders)])
        raise InvalidRequestError(f"model {model!r} is not an embedding model of this gateway",
                                  hint=f"use one of: {choices}")

    def authenticate(self, request: Request) -> Principal | None:
        """The request's principal. The guard (:mod:`.guard`) authenticated every non-public request before
        its body was read and left the result in the ASGI scope; without the guard this authenticates."""
        state = request.scope.get("state", {})
        if PRINCIPAL in state:
            principal: Principal | None = state[PRINCIPAL]
            return principal
        return self.keys.authenticate(request.headers.get("authorization"))

    def admit_request(self, principal: Principal | None) -> None:
        """Count one request against the key's requests per minute (the guard does, for every route)."""
        try:
            self.limiter.admit_request(principal)
        except TooManyRequestsError:
            self.metrics.rate_limited[principal.name if principal else "-"] += 1
            raise

    def admit(self, principal: Principal | None, *, uses_tokens: bool = False) -> None:
        """Before a model call: a 429 while the key's token bucket is in debt. (The request itself was
        counted by the guard before its body was read.)"""
        if not uses_tokens:
            return
        try:
            self.limiter.check_tokens(principal)
        except TooManyRequestsError:
            self.metrics.rate_limited[principal.name if principal else "-"] += 1
            raise

    def charge(self, principal: Principal | None, model: str, prompt: int, completion: int) -> None:
        self.limiter.charge_tokens(principal, prompt + completion)
        self.metrics.observe_tokens(model, prompt, completion)

    async def aclose(self) -> None:
        if self.writer is not None:
            await self.writer.stop()
        if self.responses is not None:
            await self.responses.aclose()
        for component in reversed(self.owned):
            try:
                await component.aclose() if hasattr(component, "aclose") else await component.close()
            except Exception as exc:  # shutting down: report and go on closing the rest
                log.warning("closing %r failed: %s", component, exc)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
