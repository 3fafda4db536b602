"""What each provider's management driver implements: list, load and unload its models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from mindgate.errors import ConfigurationError, ProviderError
from mindgate.models.records import (
    NO_OPTIONS,
    DownloadCallback,
    DownloadProgress,
    Endpoint,
    LoadedInstance,
    LoadOptions,
    ModelInfo,
)


class Driver(ABC):
    """Talks to one endpoint. ``client`` is owned by the caller (one per operation)."""

    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient) -> None:
        self.endpoint = endpoint
        self.client = client

    @abstractmethod
    async def list_models(self) -> tuple[list[ModelInfo], str]:
        """The endpoint's models and the name of the API that listed them."""

    async def load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None,
                   options: LoadOptions = NO_OPTIONS,
                   progress: Callable[[float], None] | None = None) -> LoadedInstance:
        """Load one instance of ``model``; only called when no adequate instance is loaded. ``progress``
        receives the server's own load fraction when it reports one."""
        raise self._unsupported("load models")

    def _no_options(self, options: LoadOptions) -> None:
        if options:
            raise ConfigurationError(f"GPU offload and instance identifiers are LM Studio load options; endpoint "
                                     f"{self.endpoint.name!r} is {self.endpoint.provider}",
                                     hint="drop --gpu / --identifier for this endpoint")

    async def download(self, model: str, *, quantization: str | None, progress: DownloadCallback,
                       job_id: str | None = None) -> DownloadProgress:
        """Download ``model`` to the server (or follow the server's download job ``job_id``), reporting to
        ``progress`` until it is done; returns the last state."""
        raise self._unsupported("download models")

    async def about(self) -> dict[str, Any]:
        """The server's version and what it can do (``responses_api``, ``embeddings``, ``mcp``; None =
        unknown)."""
        raise self._unsupported("report its version")

    async def unload(self, model: ModelInfo, instance_ids: Sequence[str]) -> list[str]:
        """Unload the given instances of ``model``; returns the ids unloaded."""
        raise self._unsupported("unload models")

    def _unsupported(self, what: str) -> ProviderError:
        return ProviderError(f"endpoint {self.endpoint.name!r} ({self.endpoint.provider}) cannot {what} through "
                             f"its API", provider=self.endpoint.provider, retryable=False,
                             hint="manage that server's models with its own tools")
