"""Which chat model serves a request's ``model`` field.

In order: the name of a routing chain (the default chain included) gets that chain; the id of a model
the catalog found on a managed endpoint (LM Studio, Ollama, an OpenAI-compatible server) gets that model
on that endpoint, behind a one-target router (breaker and status like any chain); anything else
(``auto``, or a name written for another provider, such as ``gpt-4o-mini``) goes through the semantic
routes when there are any, and otherwise to the default chain. So an OpenAI SDK client works by
changing only its ``base_url``, and the response's ``model`` field says which model answered.

The catalog is read in the background (at start-up and when a request names a model not seen yet, at
most every ``CATALOG_REFRESH`` seconds), never on a request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mindgate.config import MindgateConfig, TargetConfig
from mindgate.errors import PermissionDeniedError
from mindgate.models._catalog import ModelCatalog, ModelInfo, ModelType
from mindgate.providers._base import ChatModel, Embedder, Message
from mindgate.routing._chains import chat_model_for, resolve_route_target, target_model
from mindgate.routing._placement import shared_placement
from mindgate.routing._router import Router

if TYPE_CHECKING:
    from mindgate.routing._semantic import SemanticRouter

log = logging.getLogger("mindgate.routing")

CATALOG_REFRESH = 30.0
FIRST_LISTING_WAIT = 2.0
_ROUTABLE_PROVIDERS = ("lmstudio", "ollama", "openai_compatible")


class ChatTargets:
    """The default chat model, the named chains, and (from config) catalog models and semantic routes."""

    def __init__(self, default: ChatModel, named: Mapping[str, ChatModel] | None = None, *,
                 default_name: str = "auto", config: MindgateConfig | None = None,
                 catalog: ModelCatalog | None = None, semantic: SemanticRouter | None = None) -> None:
        self.default = default
        self.default_name = default_name
        self.named = dict(named or {})
        self.config = config
        self.catalog = catalog
        self.semantic = semantic
        self._by_model: dict[str, ChatModel] = {}
        self._by_route: dict[str, ChatModel] = {}
        self._configured: frozenset[str] | None = None
        self._refreshed = 0.0
        self._refresh: asyncio.Task[Any] | None = None

    def all(self) -> dict[str, ChatModel]:
        """Every chat model built so far, by name (chains, then models and routes used so far)."""
        return {self.default_name: self.default, **self.named, **self._by_model, **self._by_route}

    def label(self, name: str) -> str:
        """``name`` when it names a chain or a model served so far, else ``other``: a bounded metrics label
        (clients choose model names freely)."""
        known = name == self.default_name or name in self.named or name in self._by_model or name in self._by_route
        return name if known else "other"

    async def resolve(self, name: str, messages: Sequence[Message]) -> ChatModel:
        """The chat model for a request naming ``name`` (see the module docstring)."""
        if name == self.default_name and name != "auto":
            return self.default  # the default chain named explicitly: pinned, like any chain
        chain = self.named.get(name)
        if chain is not None:
            return chain
        model = self._catalog_model(name)
        return model if model is not None else await self._routed(messages)

    async def _routed(self, messages: Sequence[Message]) -> ChatModel:
        if self.semantic is None or not self.semantic.routes or self.config is None:
            return self.default
        match = await self.semantic.aroute(messages)
        if match.route is None or match.target == self.default_name:
            return self.default
        if match.target in self.named:
            return self.named[match.target]
        model = self._by_route.get(match.target)
        if model is None:
            model = self._by_route[match.target] = resolve_route_target(match.target, self.config)
        return model

    def _catalog_model(self, name: str) -> ChatModel | None:
        if self.catalog is None or self.config is None:
            return None
        model = self._by_model.get(name)
        if model is not None:
            return model
        found = [m for m in self.catalog.cached_models() if _routable(m) and (m.id == name or
                                                                             any(i.id == name for i in m.instances))]
        if not found:
            self.refresh_catalog()
            return None
        info = found[0]
        if not self.may_load(info):
            raise PermissionDeniedError(
                f"model {name!r} is on {info.endpoint} but not loaded, and this gateway only routes by name to "
                "models named in its config or already loaded",
                hint="load it on the server, name it in the config (e.g. a routing target), or set "
                     "gateway.allow_any_model: true to let any request load any downloaded model")
        chat = target_model(TargetConfig(endpoint=info.endpoint, model=info.id), self.config)
        model = self._by_model[name] = Router([chat], name=name)
        return model

    def may_load(self, info: ModelInfo) -> bool:
        """The model allowlist: without API keys, a request may name (and so load) a catalog model only when
        it is loaded already or named in the config, unless ``gateway.allow_any_model`` is set."""
        config = self.config
        if config is None or config.gateway.allow_any_model or config.gateway.api_keys or info.loaded:
            return True
        if self._configured is None:
            self._configured = configured_models(config)
        return info.id in self._configured or any(i.id in self._configured for i in info.instances)

    def refresh_catalog(self, *, force: bool = False) -> None:
        """List the catalog in the background (at most every ``CATALOG_REFRESH`` seconds unless forced)."""
        if self.catalog is None or (self._refresh is not None and not self._refresh.done()):
            return
        if not force and time.monotonic() - self._refreshed < CATALOG_REFRESH:
            return
        self._refreshed = time.monotonic()
        self._refresh = asyncio.get_running_loop().create_task(self._list_catalog())

    async def _list_catalog(self) -> None:
        assert self.catalog is not None
        try:
            await self.catalog.alist(refresh=True)
        except Exception as exc:  # a listing failure must not break serving; the next refresh retries
            log.warning("listing the model catalog failed: %s", exc)

    async def listing(self) -> list[dict[str, Any]]:
        """OpenAI model objects for the names requests may use (chains first, then the catalog's chat
        models), each with a ``mindgate`` object of extra fields."""
        out = []
        for name, model in {self.default_name: self.default, **self.named}.items():
            out.append({"id": name, "object": "model", "created": 0, "owned_by": "mindgate",
                        "mindgate": {"kind": "chain", "provider": model.provider, "model": model.model,
                                     "default": name == self.default_name}})
        if self.catalog is not None:
            seen = {entry["id"] for entry in out}
            for info in await self._catalog_models():
                if info.id in seen or info.type is ModelType.EMBEDDING:
                    continue
                seen.add(info.id)
                out.append({"id": info.id, "object": "model", "created": 0, "owned_by": info.provider,
                            "mindgate": {"kind": "model", "endpoint": info.endpoint, "provider": info.provider,
                                         "state": info.state.value, "type": info.type.value,
                                         "max_context_length": info.max_context_length,
                                         "loaded_context_length": info.loaded_context_length,
                                         "size_bytes": info.size_bytes, "quantization": info.quantization,
                                         "routable": _routable(info) and self.may_load(info)}})
        return out

    async def _catalog_models(self) -> list[ModelInfo]:
        """The catalog's cached models; when there are none yet, the first listing is waited for, at most
        ``FIRST_LISTING_WAIT`` seconds (a slow endpoint never holds up ``/v1/models`` for long)."""
        assert self.catalog is not None
        if not self.catalog.cached_models():
            self.refresh_catalog(force=self._refresh is None)
            if self._refresh is not None and not self._refresh.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._refresh), FIRST_LISTING_WAIT)
        else:
            self.refresh_catalog()
        return self.catalog.cached_models()

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        for model in self.all().values():
            await model.aclose()


def configured_models(config: MindgateConfig) -> frozenset[str]:
    """Model ids the config names: the ``llm`` section, named endpoints, chain targets, route targets."""
    names = {config.llm.config.model, *(e.config.model for e in config.providers.values())}
    names.update(t.model for chain in config.routing.chains.values() for t in chain.targets)
    names.update(route.target.split(":", 1)[1] for route in config.routing.routes if ":" in route.target)
    return frozenset(n for n in names if n)


def _routable(info: ModelInfo) -> bool:
    return info.provider in _ROUTABLE_PROVIDERS and info.type is not ModelType.EMBEDDING


def build_targets(config: MindgateConfig, embedder: Embedder | None = None) -> ChatTargets:
    """The chat models the config names.

    The default is the chain ``routing.default``; when that is the built-in ``auto`` and the mem0-style
    ``llm`` section names a provider, that provider's model is the default (so a mem0 config serves the
    model it names). Every chain under ``routing.chains`` is served by its name."""
    default_name = config.routing.default
    if default_name == "auto" and "auto" not in config.routing.chains and config.llm.provider != "auto":
        default: ChatModel = Router([chat_model_for(config.llm, config)], name="auto",
                                    placement=shared_placement(config.resources))
    else:
        default = Router.from_config(default_name, config)
    named = {name: Router.from_config(name, config) for name in config.routing.chains if name != default_name}
    semantic = None
    if config.routing.routes:
        from mindgate.routing._semantic import SemanticRouter

        semantic = SemanticRouter.from_config(config, embedder)
    catalog = ModelCatalog.from_config(config)
    shared_placement(config.resources).attach(catalog)
    return ChatTargets(default, named, default_name=default_name, config=config, catalog=catalog,
                       semantic=semantic)
