"""OpenAI itself (and, through ``openai_base_url``, proxies that speak its API)."""

from __future__ import annotations

from pydantic import Field

from mindgate.config import RESPONSES_API_DESCRIPTION, BaseURLConfig, ResponsesAPI
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.openai_compat import (
    OpenAICompatChatModel,
    OpenAICompatEmbedder,
    ServerProfile,
    client_from_config,
    sampling_defaults,
)


class OpenAIConfig(BaseURLConfig):
    """``provider: openai``: the common keys, ``openai_base_url`` (mem0's name) or ``base_url``, and
    ``responses_api`` (OpenAI serves ``/v1/responses`` itself: ``native`` passes requests that need no help
    from mindgate through, hosted tools included)."""

    openai_base_url: str | None = None
    responses_api: ResponsesAPI = Field(default="bridge", description=RESPONSES_API_DESCRIPTION)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CHAT_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"

PROFILE = ServerProfile(
    provider="openai",
    display="OpenAI",
    start_hint="check your network connection or `openai_base_url`",
    key_env="OPENAI_API_KEY",
    developer_role=True,
    model_hint="use a model id your account can access",
)


def chat_model(config: OpenAIConfig) -> OpenAICompatChatModel:
    client = client_from_config(config, PROFILE, default_base_url=DEFAULT_BASE_URL, require_key=True)
    return OpenAICompatChatModel(client, config.model or DEFAULT_CHAT_MODEL, defaults=sampling_defaults(config),
                                 extra_body=config.model_kwargs, responses_api=config.responses_api)


def embedder(config: OpenAIConfig) -> OpenAICompatEmbedder:
    client = client_from_config(config, PROFILE, default_base_url=DEFAULT_BASE_URL, require_key=True)
    extra = dict(config.model_kwargs)
    if config.embedding_dims and "dimensions" not in extra:
        extra["dimensions"] = config.embedding_dims  # text-embedding-3 models can shorten their output
    return OpenAICompatEmbedder(client, config.model or DEFAULT_EMBEDDING_MODEL,
                                embedding_dims=config.embedding_dims, batch_size=config.batch_size,
                                extra_body=extra)


SPEC = ProviderSpec(name="openai", config_model=OpenAIConfig, display=PROFILE.display, chat_model=chat_model,
                    embedder=embedder, base_url_keys=("openai_base_url", "base_url"),
                    default_base_url=DEFAULT_BASE_URL,
                    start_hint=PROFILE.start_hint, key_env=PROFILE.key_env, takes_reasoning_effort=True)
