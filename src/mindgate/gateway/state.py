"""The gateway's shared state: the objects every request handler uses (``app.state.gateway``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from mindgate.config import MindgateConfig
from mindgate.errors import TooManyRequestsError
from mindgate.gateway.auth import KeyRing, Principal
from mindgate.gateway.limits import RateLimiter
from mindgate.gateway.observability import Metrics
from mindgate.memory.memory import AsyncMemory
from mindgate.pipeline.core import Pipeline
from mindgate.pipeline.remember import MemoryWriter
from mindgate.providers.base import Embedder
from mindgate.routing.targets import ChatTargets

log = logging.getLogger("mindgate.gateway")


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
    owned: list[Any] = field(default_factory=list)

    @property
    def writer(self) -> MemoryWriter | None:
        """The pipeline's background memory writer (None when memory-augmented chat is off)."""
        return self.pipeline.writer

    def authenticate(self, request: Request) -> Principal | None:
        return self.keys.authenticate(request.headers.get("authorization"))

    def admit(self, principal: Principal | None, *, uses_tokens: bool = False) -> None:
        try:
            self.limiter.admit(principal, uses_tokens=uses_tokens)
        except TooManyRequestsError:
            self.metrics.rate_limited[principal.name if principal else "-"] += 1
            raise

    def charge(self, principal: Principal | None, model: str, prompt: int, completion: int) -> None:
        self.limiter.charge_tokens(principal, prompt + completion)
        self.metrics.observe_tokens(model, prompt, completion)

    async def aclose(self) -> None:
        if self.writer is not None:
            await self.writer.stop()
        for component in reversed(self.owned):
            try:
                await component.aclose() if hasattr(component, "aclose") else await component.close()
            except Exception as exc:  # shutting down: report and go on closing the rest
                log.warning("closing %r failed: %s", component, exc)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
