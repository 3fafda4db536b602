"""Which chat model serves a request's ``model`` field.

A name of a routing chain (``routing.chains``) gets that chain; ``auto`` (and any name the gateway does
not know) gets the default chain, so an OpenAI SDK client written for another model works by changing
only its ``base_url``; the response's ``model`` field says which model answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mindgate.config import MindgateConfig
from mindgate.providers import chat_model_from_section
from mindgate.providers.base import ChatModel

DEFAULT_NAME = "auto"


class ChatTargets:
    """The default chat model and the named ones (chains), by the name a request gives."""

    def __init__(self, default: ChatModel, named: Mapping[str, ChatModel] | None = None,
                 default_name: str = DEFAULT_NAME) -> None:
        self.default = default
        self.default_name = default_name
        self.named = dict(named or {})

    def resolve(self, name: str) -> ChatModel:
        return self.named.get(name, self.default)

    def all(self) -> dict[str, ChatModel]:
        return {self.default_name: self.default, **self.named}

    def listing(self) -> list[dict[str, Any]]:
        """OpenAI model objects for the names requests may use, with mindgate's extra fields."""
        out = []
        for name, model in self.all().items():
            out.append({"id": name, "object": "model", "created": 0, "owned_by": "mindgate",
                        "mindgate": {"kind": "route", "provider": model.provider, "model": model.model,
                                     "default": name == self.default_name}})
        return out

    async def aclose(self) -> None:
        for model in self.all().values():
            await model.aclose()


def build_targets(config: MindgateConfig) -> ChatTargets:
    """The chat models the config names: the routing default and every named chain."""
    return ChatTargets(chat_model_from_section(config.llm))
