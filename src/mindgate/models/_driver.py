"""What each provider's management driver implements: list, load and unload its models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import httpx

from mindgate.errors import ProviderError
from mindgate.models.records import Endpoint, LoadedInstance, ModelInfo


class Driver(ABC):
    """Talks to one endpoint. ``client`` is owned by the caller (one per operation)."""

    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient) -> None:
        self.endpoint = endpoint
        self.client = client

    @abstractmethod
    async def list_models(self) -> tuple[list[ModelInfo], str]:
        """The endpoint's models and the name of the API that listed them."""

    async def load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None) -> LoadedInstance:
        """Load one instance of ``model``; only called when no adequate instance is loaded."""
        raise self._unsupported("load models")

    async def unload(self, model: ModelInfo, instance_ids: Sequence[str]) -> list[str]:
        """Unload the given instances of ``model``; returns the ids unloaded."""
        raise self._unsupported("unload models")

    def _unsupported(self, what: str) -> ProviderError:
        return ProviderError(f"endpoint {self.endpoint.name!r} ({self.endpoint.provider}) cannot {what} through "
                             f"its API", provider=self.endpoint.provider, retryable=False,
                             hint="manage that server's models with its own tools")
