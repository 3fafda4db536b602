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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mindgate.config import BaseURLConfig, ProviderConfig
from mindgate.errors import ConfigurationError
from mindgate.providers._base import ChatModel, Embedder
from mindgate.providers.management._driver import Driver


@dataclass(frozen=True)
class ProviderSpec:
    """Everything mindgate needs to know about one provider.

    ``chat_model`` / ``embedder`` build a model from the provider's config section (None: the provider
    does not offer that kind). ``base_url_keys`` are the config keys that may carry its URL, first set
    wins (mem0 names them per provider); a key outside this tuple is a configuration error for it.
    ``config_model`` is the pydantic model of its ``config`` section (default
    :class:`~mindgate.config.BaseURLConfig`): :class:`ProviderConfig` (the keys every provider takes) plus its
    own keys with their defaults (``extra="forbid"``, inherited); a section naming
    this provider is validated by it, so any other key is an error naming this provider's keys. Its
    ``chat_model`` / ``embedder`` receive an instance of it.
    ``default_base_url`` is used when none is set (None: one is required). ``start_hint`` says how to
    bring the server up when it does not answer; ``get_model_hint`` how to get a model onto it when it has
    none of the kind wanted. ``driver`` is the class (a
    :class:`~mindgate.providers.management._driver.Driver`, kept in the provider's own package) that
    ``mindgate models``, the catalog and routing's placement use to list/load/unload its models (None: not
    managed)."""

    name: str
    display: str
    chat_model: Callable[[Any], ChatModel] | None = None  # takes an instance of config_model
    embedder: Callable[[Any], Embedder] | None = None
    base_url_keys: tuple[str, ...] = ("base_url",)
    config_model: type[ProviderConfig] = BaseURLConfig
    default_base_url: str | None = None
    start_hint: str | None = None
    get_model_hint: str | None = None
    key_env: str | None = None
    takes_top_k: bool = False
    takes_reasoning_effort: bool = False
    driver: type[Driver] | None = None

    def __post_init__(self) -> None:
        if self.chat_model is None and self.embedder is None:
            raise ConfigurationError(f"provider spec {self.name!r} offers neither a chat model nor an embedder")
        if not (isinstance(self.config_model, type) and issubclass(self.config_model, ProviderConfig)):
            raise ConfigurationError(f"provider spec {self.name!r}: config_model must be a subclass of "
                                     "mindgate.config.ProviderConfig")
        missing = [key for key in self.base_url_keys if key not in self.config_model.model_fields]
        if missing:
            raise ConfigurationError(f"provider spec {self.name!r} names base-URL keys its config model lacks: "
                                     f"{', '.join(missing)}", hint="declare them as fields of its config_model")

    def configure(self, config: ProviderConfig | Mapping[str, Any] | None = None) -> ProviderConfig:
        """``config`` (a config model or a dict of mem0-style keys) as this provider's model (default: all
        defaults); a key it does not take, or a bad value, is a ConfigurationError naming it."""
        if type(config) is self.config_model:  # exact: a subclass is another provider's model
            return config
        if isinstance(config, ProviderConfig):
            config = {key: getattr(config, key) for key in config.model_fields_set}
        try:
            return self.config_model.model_validate(config or {})
        except ValidationError as exc:
            problems = "; ".join(f"`{'.'.join(map(str, e['loc'])) or '(config)'}`: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"invalid config for provider {self.name!r}: {problems}",
                                     hint=f"its keys: {', '.join(sorted(self.config_model.model_fields))}") from None
