"""What a provider declares about itself: :class:`ProviderSpec`.

A provider is one module exporting ``SPEC`` and one entry point in the ``mindgate.providers`` group
(``name = "package.module:SPEC"``), for built-ins (mindgate's ``pyproject.toml``) and third-party packages
alike. Everything vendor-specific lives in that module: how to build its chat model and embedder, which
config keys name its base URL, its default URL, how to start it, which environment variable holds its key,
which request options it takes, and (for servers mindgate manages) which management driver lists and
loads its models. Nothing else in mindgate names a vendor's URL or start command.

An OpenAI-compatible provider needs no code beyond
:func:`mindgate.providers.openai_compat.openai_compatible_spec`::

    SPEC = openai_compatible_spec("acme", "Acme AI", default_base_url="https://api.acme.example/v1",
                                  key_env="ACME_API_KEY", chat_model_default="acme-chat")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mindgate.config import PROVIDER_SPECIFIC_KEYS, ProviderConfig
from mindgate.errors import ConfigurationError
from mindgate.providers.base import ChatModel, Embedder

ManagementKind = Literal["lmstudio", "ollama", "openai_compatible", "local"]


@dataclass(frozen=True)
class ProviderSpec:
    """Everything mindgate needs to know about one provider.

    ``chat_model`` / ``embedder`` build a model from the provider's config section (None: the provider
    does not offer that kind). ``base_url_keys`` are the config keys that may carry its URL, first set
    wins (mem0 names them per provider); a key outside this tuple is a configuration error for it.
    ``config_keys`` are the provider-specific keys of :class:`ProviderConfig` it uses (out of
    :data:`mindgate.config.PROVIDER_SPECIFIC_KEYS`); setting another one is a configuration error.
    ``default_base_url`` is used when none is set (None: one is required). ``start_hint`` says how to
    bring the server up when it does not answer. ``management`` names the driver ``mindgate models``
    uses to list/load/unload its models (None: not managed)."""

    name: str
    display: str
    chat_model: Callable[[ProviderConfig], ChatModel] | None = None
    embedder: Callable[[ProviderConfig], Embedder] | None = None
    base_url_keys: tuple[str, ...] = ("base_url",)
    config_keys: frozenset[str] = frozenset()
    default_base_url: str | None = None
    start_hint: str | None = None
    key_env: str | None = None
    takes_top_k: bool = False
    takes_reasoning_effort: bool = False
    management: ManagementKind | None = None

    def __post_init__(self) -> None:
        if self.chat_model is None and self.embedder is None:
            raise ConfigurationError(f"provider spec {self.name!r} offers neither a chat model nor an embedder")
        unknown = self.config_keys - PROVIDER_SPECIFIC_KEYS
        if unknown:
            raise ConfigurationError(f"provider spec {self.name!r} names unknown config keys: "
                                     f"{', '.join(sorted(unknown))}",
                                     hint=f"choose from {', '.join(sorted(PROVIDER_SPECIFIC_KEYS))}")
