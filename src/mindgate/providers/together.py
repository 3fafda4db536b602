"""Together AI (``https://api.together.xyz/v1``, OpenAI-compatible; key ``TOGETHER_API_KEY``).

Documented quirks handled: ``GET /models`` answers a bare JSON array (not ``{"data": [...]}``); a model that
is not served serverlessly is HTTP 400 with code ``model_not_available`` (or ``dedicated_endpoint_not_running``),
which becomes a :class:`ModelNotFoundError` listing (some of) the models Together serves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mindgate.config import ProviderConfig
from mindgate.errors import ConfigurationError
from mindgate.providers._http_errors import error_code, http_error
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.openai_compat import (
    OpenAICompatChatModel,
    OpenAICompatClient,
    OpenAICompatEmbedder,
    ServerProfile,
    sampling_defaults,
)

DEFAULT_BASE_URL = "https://api.together.xyz/v1"
DEFAULT_CHAT_MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
DEFAULT_EMBEDDING_MODEL = "togethercomputer/m2-bert-80M-8k-retrieval"
_UNSERVED_CODES = frozenset({"model_not_available", "dedicated_endpoint_not_running"})

PROFILE = ServerProfile(
    provider="together",
    display="Together AI",
    start_hint="check your network connection or `base_url`",
    key_env="TOGETHER_API_KEY",
    model_hint="use a serverless model id from Together's model list",
    passes_extras=True,  # top_k, repetition_penalty, min_p
)


class TogetherClient(OpenAICompatClient):
    async def list_models(self) -> list[str]:
        data = await self.request_json("GET", "/models", timeout=10.0)
        items = data if isinstance(data, list) else data.get("data", []) if isinstance(data, dict) else []
        return [str(item["id"]) for item in items if isinstance(item, dict) and "id" in item]

    async def raise_for_status(self, status: int, body: str, headers: Mapping[str, str], *,
                               model: str | None) -> None:
        if model and error_code(body) in _UNSERVED_CODES:  # a 400/503 that means "no such serverless model"
            raise http_error(status, body, headers, provider=PROFILE.provider, where=f"Together AI at {self.base_url}",
                             model=model, available=await self._available_models(), model_hint=PROFILE.model_hint,
                             treat_as=404)
        await super().raise_for_status(status, body, headers, model=model)


def _client(config: ProviderConfig) -> TogetherClient:
    api_key = config.api_key or os.environ.get("TOGETHER_API_KEY")
    if not api_key:
        raise ConfigurationError("provider 'together' needs an API key",
                                 hint="set TOGETHER_API_KEY or `api_key` in the provider config")
    return TogetherClient(config.base_url_for("together") or DEFAULT_BASE_URL, profile=PROFILE, api_key=api_key,
                          headers=config.headers, timeout=config.timeout, connect_timeout=config.connect_timeout,
                          proxy=config.http_client_proxies)


def chat_model(config: ProviderConfig) -> OpenAICompatChatModel:
    return OpenAICompatChatModel(_client(config), config.model or DEFAULT_CHAT_MODEL,
                                 defaults=sampling_defaults(config), extra_body=config.model_kwargs)


def embedder(config: ProviderConfig) -> OpenAICompatEmbedder:
    return OpenAICompatEmbedder(_client(config), config.model or DEFAULT_EMBEDDING_MODEL,
                                embedding_dims=config.embedding_dims, batch_size=config.batch_size,
                                extra_body=config.model_kwargs)


SPEC = ProviderSpec(name="together", display=PROFILE.display, chat_model=chat_model, embedder=embedder,
                    default_base_url=DEFAULT_BASE_URL, start_hint=PROFILE.start_hint, key_env=PROFILE.key_env,
                    takes_top_k=True, takes_reasoning_effort=True)
