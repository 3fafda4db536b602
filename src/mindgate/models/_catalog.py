"""``ModelCatalog``: which models exist where, and which are loaded, across every configured endpoint.

Contracts:

* One record shape for every provider (:class:`~mindgate.models.ModelInfo`); ``source`` says which
  API each fact came from. LM Studio is read through ``/api/v1/models``, falling back to ``/api/v0/models``
  and then ``/v1/models``; Ollama through ``/api/tags`` + ``/api/ps`` + ``/api/show``; any
  OpenAI-compatible server through ``/v1/models``; the local engine from GGUF headers.
* Listings are cached per endpoint for ``ttl`` seconds (``refresh=True`` bypasses the cache; load and
  unload invalidate it).
* An endpoint that is down or broken shows as unreachable in :attr:`CatalogListing.endpoints` with its
  error; it never breaks the listing of the others.
* Endpoints come from the config (:func:`endpoints_from_config`) or are given explicitly.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from mindgate._sync import run_sync
from mindgate.config import MindgateConfig, ProviderConfig
from mindgate.errors import ConfigurationError, MindgateError, ModelNotFoundError, ProviderError
from mindgate.providers import provider_spec
from mindgate.providers.local._pool import LocalModelPool, default_pool
from mindgate.providers.management._driver import Driver, Shared, driver_for, matches
from mindgate.providers.management._http import Unsupported, client_for, display
from mindgate.providers.management._records import (
    Capabilities,
    Endpoint,
    EndpointStatus,
    LoadedInstance,
    ModelInfo,
    ModelState,
    ModelType,
)

__all__ = ["Capabilities", "CatalogListing", "Endpoint", "EndpointStatus", "LoadedInstance", "ModelCatalog",
           "ModelInfo", "ModelState", "ModelType", "endpoints_from_config", "matches"]

DISCOVERY_TIMEOUT = 10.0


def _server_root(url: str) -> str:
    """``http://host:1234/v1/`` -> ``http://host:1234`` (LM Studio and Ollama paths start at the root)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _api_base(url: str) -> str:
    """An OpenAI-compatible API base; a bare ``http://host:port`` gets ``/v1``."""
    url = url.rstrip("/")
    return url if url.count("/") > 2 else f"{url}/v1"


def _endpoint(name: str, provider: str, config: ProviderConfig | None) -> Endpoint:
    config = config or ProviderConfig()
    url = config.base_url_for(provider)
    spec = provider_spec(provider)
    if spec.driver is None:
        raise ConfigurationError(f"provider {provider!r} has no model management", hint="its spec names no driver")
    form = spec.driver.url_form
    if form == "root":
        url = _server_root(url or spec.default_base_url or "")
    elif form == "api":
        url = url or spec.default_base_url
        if not url:
            raise ConfigurationError(f"endpoint {name!r} ({provider}) has no base_url",
                                     hint="set base_url, e.g. http://localhost:8000/v1")
        url = _api_base(url)
    return Endpoint(name=name, provider=provider, url=url if form != "none" else None, api_key=config.api_key,
                    model_path=config.get("model_path"), n_ctx=config.get("n_ctx"),
                    timeout=min(config.timeout, DISCOVERY_TIMEOUT), connect_timeout=config.connect_timeout)


def endpoints_from_config(config: MindgateConfig) -> list[Endpoint]:
    """The endpoints whose models mindgate manages: named ``providers``, then the ``llm`` and ``embedder``
    sections (``auto`` means LM Studio and Ollama -- at the section's ``lmstudio_base_url`` /
    ``ollama_base_url``, else on their default ports -- plus the local engine). Cloud
    providers are not listed (they have no model management); duplicates (same provider and URL) are
    listed once."""
    out: list[Endpoint] = []

    def add(name: str, provider: str, cfg: ProviderConfig | None) -> None:
        if provider == "auto" or provider_spec(provider).driver is None:
            return
        endpoint = _endpoint(name, provider, cfg)
        if any(e.provider == endpoint.provider and e.url == endpoint.url and e.model_path == endpoint.model_path
               for e in out):
            return
        if any(e.name == endpoint.name for e in out):
            endpoint = _endpoint(f"{name}-{len(out) + 1}", provider, cfg)
        out.append(endpoint)

    for name, endpoint in config.providers.items():
        add(name, endpoint.provider, endpoint.config)
    for section in (config.llm, config.embedder):
        if section.provider == "auto":  # its LM Studio and Ollama where the section points them; its URL
            for provider in ("lmstudio", "ollama", "local"):  # endpoints are found only at first use
                url = section.config.base_url_for(provider) if provider != "local" else None
                model = provider_spec(provider).config_model
                add(provider, provider, model.model_validate({f"{provider}_base_url": url}) if url else None)
        else:
            add(section.provider, section.provider, section.config)
    return out


@dataclass(frozen=True)
class CatalogListing:
    """Models across endpoints plus each endpoint's status (reachable or not, and why)."""

    models: tuple[ModelInfo, ...]
    endpoints: tuple[EndpointStatus, ...]

    @property
    def loaded(self) -> list[ModelInfo]:
        return [m for m in self.models if m.state is ModelState.LOADED]

    def find(self, model_id: str, *, endpoint: str | None = None) -> list[ModelInfo]:
        """Models named ``model_id`` (exact id first, then the lenient forms of :func:`matches`)."""
        pool = [m for m in self.models if endpoint is None or m.endpoint == endpoint]
        exact = [m for m in pool if m.id == model_id or any(i.id == model_id for i in m.instances)]
        return exact or [m for m in pool if matches(m, model_id)]

    def to_dict(self) -> dict[str, Any]:
        return {"models": [m.to_dict() for m in self.models], "endpoints": [s.to_dict() for s in self.endpoints]}


class ModelCatalog:
    """Lists models across endpoints with a short cache; see the module docstring."""

    def __init__(self, endpoints: Sequence[Endpoint], *, ttl: float = 5.0, pool: LocalModelPool | None = None) -> None:
        names = [e.name for e in endpoints]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(f"endpoint names must be unique; repeated: {', '.join(duplicates)}")
        self.endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self.ttl = ttl
        self.pool = pool or default_pool()
        self._cache: dict[str, tuple[float, list[ModelInfo], EndpointStatus]] = {}
        self._errors: dict[str, MindgateError] = {}
        self._shared = Shared(pool=self.pool)

    @classmethod
    def from_config(cls, config: MindgateConfig | None = None, **kwargs: Any) -> ModelCatalog:
        return cls(endpoints_from_config(config or MindgateConfig.load()), **kwargs)

    def endpoint(self, name: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise ConfigurationError(f"no endpoint named {name!r}",
                                 hint=f"configured endpoints: {', '.join(e.name for e in self.endpoints) or 'none'}")

    def driver(self, endpoint: Endpoint, client: httpx.AsyncClient) -> Driver:
        """The driver of ``endpoint``'s provider (from its spec), sharing this catalog's pool and caches."""
        return driver_for(endpoint, client, self._shared)

    def invalidate(self, endpoint: str | None = None) -> None:
        """Drop cached listings (of one endpoint, or all)."""
        if endpoint is None:
            self._cache.clear()
        else:
            self._cache.pop(endpoint, None)

    def listed_at(self, endpoint: str) -> float | None:
        """When ``endpoint`` was last listed (``time.monotonic()``), None when never."""
        cached = self._cache.get(endpoint)
        return cached[0] if cached else None

    def cached_models(self) -> list[ModelInfo]:
        """Models from the cached listings, however old (no network)."""
        return [m for _, models, _ in self._cache.values() for m in models]

    async def _list_endpoint(self, endpoint: Endpoint, refresh: bool) -> tuple[list[ModelInfo], EndpointStatus]:
        cached = self._cache.get(endpoint.name)
        if cached and not refresh and time.monotonic() - cached[0] < self.ttl:
            return cached[1], cached[2]
        started = time.monotonic()
        try:
            async with client_for(endpoint) as client:
                models, api = await self.driver(endpoint, client).list_models()
        except Exception as exc:  # any failure marks this endpoint unreachable, never the whole listing
            if isinstance(exc, MindgateError):
                error = exc
            elif isinstance(exc, Unsupported):
                error = ProviderError(f"endpoint {endpoint.name!r} does not look like {display(endpoint.provider)}: "
                                      f"{exc}", provider=endpoint.provider, retryable=False,
                                      hint="check the endpoint's provider and URL")
            else:
                error = ProviderError(f"endpoint {endpoint.name!r} gave an answer mindgate cannot read: {exc!r}",
                                      provider=endpoint.provider, retryable=False)
            self._errors[endpoint.name] = error
            status = EndpointStatus(endpoint, False, error=str(error),
                                    latency_s=round(time.monotonic() - started, 4))
            models = []
        else:
            self._errors.pop(endpoint.name, None)
            status = EndpointStatus(endpoint, True, api=api, latency_s=round(time.monotonic() - started, 4),
                                    model_count=len(models))
        self._cache[endpoint.name] = (time.monotonic(), models, status)
        return models, status

    async def alist(self, *, refresh: bool = False, endpoint: str | None = None) -> CatalogListing:
        """Every endpoint's models (or one endpoint's), fetched concurrently."""
        targets = [self.endpoint(endpoint)] if endpoint else list(self.endpoints)
        results = await asyncio.gather(*(self._list_endpoint(e, refresh) for e in targets))
        return CatalogListing(tuple(m for models, _ in results for m in models),
                              tuple(status for _, status in results))

    async def aresolve(self, model_id: str, *, endpoint: str | None = None, refresh: bool = False) -> ModelInfo:
        """The model ``model_id`` names (on ``endpoint``, else on the first endpoint that has it).

        Raises ModelNotFoundError listing what exists, or the endpoint's own error when ``endpoint`` is
        given and unreachable."""
        listing = await self.alist(refresh=refresh, endpoint=endpoint)
        found = listing.find(model_id)
        if endpoint and not found and endpoint in self._errors:
            raise self._errors[endpoint]
        by_endpoint: dict[str, list[ModelInfo]] = {}
        for model in found:
            by_endpoint.setdefault(model.endpoint, []).append(model)
        for name in (e.name for e in self.endpoints):
            candidates = by_endpoint.get(name)
            if not candidates:
                continue
            if len(candidates) > 1:
                raise ModelNotFoundError(
                    f"{model_id!r} is ambiguous on endpoint {name!r}: {', '.join(m.id for m in candidates)}",
                    available=[m.id for m in candidates], hint="name the exact id (with its @ suffix or :tag)")
            return candidates[0]
        available = sorted({m.id for m in listing.models})
        close = difflib.get_close_matches(model_id, available, n=3)
        unreachable = [s.endpoint.name for s in listing.endpoints if not s.reachable]
        hint = f"did you mean {', '.join(close)}?" if close else "see `mindgate models list`"
        if unreachable:
            hint += f" (unreachable endpoints not searched: {', '.join(unreachable)})"
        where = f"endpoint {endpoint!r}" if endpoint else "any endpoint"
        raise ModelNotFoundError(f"no model {model_id!r} on {where}", available=available, hint=hint)

    async def aabout(self, endpoint: str) -> dict[str, Any]:
        """The server's version and what it can do (see :meth:`Driver.about`)."""
        target = self.endpoint(endpoint)
        async with client_for(target) as client:
            return await self.driver(target, client).about()

    def list(self, *, refresh: bool = False, endpoint: str | None = None) -> CatalogListing:
        return run_sync(self.alist(refresh=refresh, endpoint=endpoint))

    def resolve(self, model_id: str, *, endpoint: str | None = None, refresh: bool = False) -> ModelInfo:
        return run_sync(self.aresolve(model_id, endpoint=endpoint, refresh=refresh))
