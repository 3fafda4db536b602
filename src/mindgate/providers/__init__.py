"""Providers: one module per backend, each exporting a :class:`~mindgate.providers._spec.ProviderSpec`.

Providers are found through the ``mindgate.providers`` entry-point group (:mod:`mindgate._plugins`):
mindgate's built-ins are declared there in its ``pyproject.toml`` exactly as a third-party package declares
its own, so a provider package installed beside mindgate is usable from config by its name.
:func:`create_chat_model` / :func:`create_embedder` import a provider's module on first use, so an unused
backend's dependencies (torch, llama.cpp) are never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mindgate._plugins import load as _load_plugin
from mindgate._plugins import provider_names
from mindgate.config import ProviderConfig
from mindgate.errors import ConfigurationError
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Embedder, EmbedderIdentity, Usage
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.openai_compat import openai_compatible_spec

__all__ = ["ChatChunk", "ChatModel", "ChatResponse", "Embedder", "EmbedderIdentity", "ProviderSpec", "Usage",
           "create_chat_model", "create_embedder", "openai_compatible_spec", "provider_names", "provider_spec"]


def provider_spec(provider: str) -> ProviderSpec:
    """The spec registered under ``provider`` (its module imported on first use), or ConfigurationError."""
    if provider == "auto":
        raise ConfigurationError("`auto` is a routing chain, not a provider",
                                 hint="use mindgate.routing.chat_model_for(section, config) or "
                                      "mindgate.routing.auto_router()")
    spec = _load_plugin(provider)
    if not isinstance(spec, ProviderSpec):
        raise ConfigurationError(f"provider {provider!r} is registered with a {type(spec).__name__}, "
                                 "not a mindgate.providers.ProviderSpec",
                                 hint="its entry point must name the module's SPEC object (package.module:SPEC)")
    return spec


def create_chat_model(provider: str, config: ProviderConfig | Mapping[str, Any] | None = None) -> ChatModel:
    """A chat model for ``provider`` configured by ``config``: a dict of mem0's keys
    (``{"model": "llama3.2", "ollama_base_url": "http://h:11434"}``) or a config model, validated by the
    provider's own model (:meth:`ProviderSpec.configure`; a key it does not take is a ConfigurationError)."""
    spec = provider_spec(provider)
    if spec.chat_model is None:
        raise ConfigurationError(f"provider {provider!r} offers no chat model",
                                 hint=f"chat providers: {', '.join(_offering('chat_model'))}")
    return spec.chat_model(spec.configure(config))


def create_embedder(provider: str, config: ProviderConfig | Mapping[str, Any] | None = None) -> Embedder:
    """An embedder for ``provider`` configured by ``config`` (as for :func:`create_chat_model`)."""
    if provider == "auto":
        raise ConfigurationError("the embedder has no `auto` provider",
                                 hint="use `local` (the default) or name a provider")
    spec = provider_spec(provider)
    if spec.embedder is None:
        raise ConfigurationError(f"provider {provider!r} offers no embedder",
                                 hint=f"embedding providers: {', '.join(_offering('embedder'))}")
    return spec.embedder(spec.configure(config))


def _offering(kind: str) -> list[str]:
    names = []
    for name in provider_names():
        try:
            if getattr(provider_spec(name), kind) is not None:
                names.append(name)
        except ConfigurationError:
            continue  # a broken plugin is reported when it is used, not here
    return names
