"""The Gemini API through its OpenAI-compatible endpoint (``https://generativelanguage.googleapis.com/v1beta/openai``).

* Key: ``api_key``, else ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``, sent as ``Authorization: Bearer``.
* Errors are Google's format in a one-element list; a bad key is HTTP 400 ``API_KEY_INVALID`` and a 429
  carries ``RetryInfo`` (see :mod:`mindgate.providers._google`).
* ``GET /models`` lists ids as ``models/<id>``; they are reported without the prefix.
* Embeddings: default ``gemini-embedding-001`` (3072 dims); ``embedding_dims`` is sent as OpenAI's
  ``dimensions`` (the compatibility layer does not document it, so the probe checks the result either way);
  at most 100 texts per request, as for Gemini's batch embedding.
* ``base_url`` points it elsewhere (a proxy, or the contract fake in tests).
"""

from __future__ import annotations

import os

from mindgate.config import ProviderConfig
from mindgate.errors import ConfigurationError
from mindgate.providers._google import GoogleClient
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.openai_compat import (
    OpenAICompatChatModel,
    OpenAICompatEmbedder,
    ServerProfile,
    sampling_defaults,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai"
DEFAULT_CHAT_MODEL = "gemini-2.5-flash"
DEFAULT_EMBEDDING_MODEL = "gemini-embedding-001"
KEY_ENVS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
MAX_EMBED_BATCH = 100
KEY_HINT = "set GOOGLE_API_KEY (or GEMINI_API_KEY) or `api_key` in the provider config; keys come from Google AI Studio"

PROFILE = ServerProfile(
    provider="gemini",
    display="the Gemini API",
    start_hint="check your network connection or `base_url`",
    key_env="GOOGLE_API_KEY",
    model_hint="use a model id the Gemini API lists (e.g. gemini-2.5-flash, gemini-embedding-001)",
)


class GeminiClient(GoogleClient):
    async def list_models(self) -> list[str]:
        return [model.removeprefix("models/") for model in await super().list_models()]


def _client(config: ProviderConfig) -> GeminiClient:
    api_key = config.api_key or next((os.environ[name] for name in KEY_ENVS if os.environ.get(name)), None)
    if not api_key:
        raise ConfigurationError("provider 'gemini' needs an API key", hint=KEY_HINT)
    return GeminiClient(config.base_url_for("gemini") or DEFAULT_BASE_URL, profile=PROFILE, key_hint=KEY_HINT,
                        api_key=api_key, headers=config.headers, timeout=config.timeout,
                        connect_timeout=config.connect_timeout, proxy=config.http_client_proxies)


def chat_model(config: ProviderConfig) -> OpenAICompatChatModel:
    return OpenAICompatChatModel(_client(config), config.model or DEFAULT_CHAT_MODEL,
                                 defaults=sampling_defaults(config), extra_body=config.model_kwargs)


def embedder(config: ProviderConfig) -> OpenAICompatEmbedder:
    extra = dict(config.model_kwargs)
    if config.embedding_dims and "dimensions" not in extra:
        extra["dimensions"] = config.embedding_dims
    return OpenAICompatEmbedder(_client(config), config.model or DEFAULT_EMBEDDING_MODEL,
                                embedding_dims=config.embedding_dims,
                                batch_size=min(config.batch_size, MAX_EMBED_BATCH), extra_body=extra)


SPEC = ProviderSpec(name="gemini", display=PROFILE.display, chat_model=chat_model, embedder=embedder,
                    default_base_url=DEFAULT_BASE_URL, start_hint=PROFILE.start_hint, key_env=PROFILE.key_env,
                    takes_reasoning_effort=True)
