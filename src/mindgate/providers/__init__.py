"""Providers: one module per backend, each exposing ``chat_model(config)`` and ``embedder(config)``.

:func:`create_chat_model` / :func:`create_embedder` pick the module by provider name and import it on
first use, so an unused backend's dependencies (torch, llama.cpp) are never imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from mindgate.config import ChatProviderName, EmbedderProviderName, ProviderConfig
from mindgate.errors import ConfigurationError
from mindgate.providers.base import ChatChunk, ChatModel, ChatResponse, Embedder, EmbedderIdentity, Usage

__all__ = ["ChatChunk", "ChatModel", "ChatResponse", "Embedder", "EmbedderIdentity", "Usage",
           "create_chat_model", "create_embedder"]

MODULES: dict[str, str] = {
    "lmstudio": "mindgate.providers.lmstudio",
    "ollama": "mindgate.providers.ollama",
    "openai": "mindgate.providers.openai",
    "azure_openai": "mindgate.providers.azure",
    "gemini": "mindgate.providers.gemini",
    "vertexai": "mindgate.providers.vertex",
    "together": "mindgate.providers.together",
    "huggingface": "mindgate.providers.huggingface",
    "openai_compatible": "mindgate.providers.openai_compat",
    "local": "mindgate.providers.local",
}


def _module(provider: str) -> Any:
    if provider == "auto":
        raise ConfigurationError("`auto` is a routing chain, not a provider",
                                 hint="use mindgate.routing.chains.chat_model_for(section, config) or "
                                      "mindgate.routing.auto.auto_router()")
    if provider not in MODULES:
        raise ConfigurationError(f"unknown provider {provider!r}", hint=f"valid providers: {', '.join(MODULES)}")
    return importlib.import_module(MODULES[provider])


def create_chat_model(provider: ChatProviderName | str, config: ProviderConfig | None = None) -> ChatModel:
    """A chat model for ``provider`` configured by ``config`` (mem0's keys)."""
    model: ChatModel = _module(provider).chat_model(config or ProviderConfig())
    return model


def create_embedder(provider: EmbedderProviderName | str, config: ProviderConfig | None = None) -> Embedder:
    """An embedder for ``provider`` configured by ``config`` (mem0's keys)."""
    if provider == "auto":
        raise ConfigurationError("the embedder has no `auto` provider",
                                 hint="use `local` (the default) or name a provider")
    embedder: Embedder = _module(provider).embedder(config or ProviderConfig())
    return embedder


