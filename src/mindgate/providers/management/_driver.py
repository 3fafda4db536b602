"""What each provider's management driver implements: list, load and unload its models.

A provider that manages its models names its :class:`Driver` subclass in its spec (``ProviderSpec.driver``);
the catalog builds one per operation with :func:`driver_for`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx

from mindgate.errors import ConfigurationError, ProviderError
from mindgate.providers.management._records import (
    NO_OPTIONS,
    DownloadCallback,
    DownloadProgress,
    Endpoint,
    LoadedInstance,
    LoadOptions,
    ModelInfo,
)


@dataclass
class Shared:
    """What one catalog shares among the drivers it builds: the in-process model pool (None: the process-wide
    one) and a cache per provider (e.g. Ollama's ``/api/show`` answers)."""

    pool: Any = None
    caches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cache(self, provider: str) -> dict[str, Any]:
        return self.caches.setdefault(provider, {})


class Driver(ABC):
    """Talks to one endpoint. ``client`` is owned by the caller (one per operation); ``shared`` is the
    catalog's :class:`Shared`.

    ``url_form`` says how an endpoint of this driver writes its URL: the server ``root``
    (``http://host:1234``: LM Studio, Ollama), the OpenAI ``api`` base (``http://host:8000/v1``), or
    ``none`` (the in-process engine)."""

    url_form: ClassVar[Literal["root", "api", "none"]] = "root"
    loads_on_demand: ClassVar[bool] = False
    """The server loads models into its own memory on demand, lists their sizes, offloads to the GPU and
    reports what it can do (LM Studio, Ollama): routing admits its models by fit when it runs on this
    machine, and ``mindgate doctor`` shows its capabilities."""

    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient, shared: Shared | None = None) -> None:
        self.endpoint = endpoint
        self.client = client
        self.shared = shared or Shared()

    @classmethod
    def names(cls, model: ModelInfo, requested: str) -> bool:
        """Does ``requested`` name ``model`` in a form this server accepts besides its exact id (LM Studio's
        id without the ``@quantization`` suffix, an Ollama name without ``:latest``)?"""
        return False

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


def driver_class(provider: str) -> type[Driver] | None:
    """The driver ``provider``'s spec names (None: its models are not managed)."""
    from mindgate.providers import provider_spec

    return provider_spec(provider).driver


def loads_on_demand(provider: str | None) -> bool:
    """Whether ``provider`` is registered and its driver's server loads models on demand
    (:attr:`Driver.loads_on_demand`); False for routers, ``auto`` and anything unregistered."""
    from mindgate._plugins import provider_names

    if not provider or provider not in provider_names():  # no registry scan for names that are not providers
        return False
    cls = driver_class(provider)
    return cls is not None and cls.loads_on_demand


def driver_for(endpoint: Endpoint, client: httpx.AsyncClient, shared: Shared | None = None) -> Driver:
    """The driver of ``endpoint``'s provider, for one operation over ``client``."""
    cls = driver_class(endpoint.provider)
    if cls is None:
        raise ConfigurationError(f"endpoint {endpoint.name!r}: provider {endpoint.provider!r} has no model management",
                                 hint="its spec names no driver")
    return cls(endpoint, client, shared)


def matches(model: ModelInfo, requested: str) -> bool:
    """Does ``requested`` name ``model``? Its exact id, a loaded instance's id, or a form its provider's driver
    accepts (:meth:`Driver.names`)."""
    if requested == model.id or any(i.id == requested for i in model.instances):
        return True
    cls = driver_class(model.provider)
    return cls is not None and cls.names(model, requested)
