"""LM Studio's OpenAI-compatible surface (``/v1``), with its documented quirks handled.

* Structured output: LM Studio accepts ``response_format`` ``json_schema`` or ``text`` and answers
  ``json_object`` with HTTP 400, so ``json_object`` is never tried.
* Model ids may carry a quantization suffix (``qwen2.5-7b-instruct@q4_k_m``). A model asked for without
  (or with another) suffix is resolved to the single listed variant with the same base id; several
  variants are an error that lists them.
* ``/v1/embeddings`` takes strings only (token arrays are rejected before sending).
* mem0's path-style ids (``nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.f16.gguf``) resolve to
  the listed key of the same model (``text-embedding-nomic-embed-text-v1.5``): by file path when the SDK
  lists paths, else by the file name without its quantization suffix.
* No ``model`` configured: the model is detected at first use (:mod:`mindgate.providers.management._detect`): a
  loaded LLM (embedding model, for the embedder), else the best downloaded one that fits.
* Before a chat request, the model is made loaded through the management API, once for all concurrent
  requests (:func:`ensure_loaded`): with JIT loading, concurrent first requests would make LM Studio load
  it once per request. The check is repeated at most every ``ENSURE_EVERY`` seconds; a model loaded this
  way gets ``ttl`` (default LM Studio's JIT default, 3600 s) so it is unloaded when idle as a JIT load is.
* With the ``lmstudio`` SDK usable, prompt tokens are counted by the loaded model's own tokenizer (over the
  messages in ChatML framing) and its loaded context length is read from the server; without it the
  context length comes from the REST listing and token counts are None (estimated by the caller).
* With JIT loading off, a request for an unloaded model answers "No models loaded": that becomes a
  :class:`~mindgate.errors.ModelNotFoundError` saying to ``lms load`` it or enable JIT loading.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import Field

from mindgate.config import RESPONSES_API_DESCRIPTION, TTL_DESCRIPTION, BaseURLConfig, ProviderConfig, ResponsesAPI
from mindgate.errors import MindgateError, ModelNotFoundError, NetworkError
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Embedder, Message, chatml_prompt
from mindgate.providers._lazy import LazyChatModel, LazyEmbedder
from mindgate.providers._spec import ProviderSpec
from mindgate.providers.lmstudio import _sdk as sdk
from mindgate.providers.lmstudio._management import OPENAI, LMStudioDriver, single_flight
from mindgate.providers.management._driver import matches
from mindgate.providers.management._http import client_for
from mindgate.providers.management._records import Endpoint, ModelInfo, ModelState
from mindgate.providers.openai_compat import (
    OpenAICompatChatModel,
    OpenAICompatClient,
    OpenAICompatEmbedder,
    ServerProfile,
    client_from_config,
    proxy_routes,
    sampling_defaults,
)


class LMStudioConfig(BaseURLConfig):
    """``provider: lmstudio``: the common keys, ``lmstudio_base_url`` (mem0's name) or ``base_url``, and how
    mindgate loads the model (context length, idle TTL)."""

    lmstudio_base_url: str | None = None
    n_ctx: int | None = Field(default=None, gt=0, description="context length a model is loaded with")
    ttl: int | None = Field(default=None, gt=0, description=TTL_DESCRIPTION)
    responses_api: ResponsesAPI = Field(default="bridge", description=RESPONSES_API_DESCRIPTION
                                        + "; LM Studio serves /v1/responses from 0.3.29")

log = logging.getLogger("mindgate.providers.lmstudio")

DEFAULT_BASE_URL = "http://localhost:1234/v1"
ENSURE_EVERY = 10.0
JIT_DEFAULT_TTL = 3600
_QUANT_SUFFIX = re.compile(r"[.\-_](?:f16|f32|bf16|fp16|q\d[\w]*|iq\d[\w]*)$", re.IGNORECASE)

PROFILE = ServerProfile(
    provider="lmstudio",
    display="LM Studio",
    start_hint="start it with `lms server start` (or the Developer tab in the LM Studio app)",
    key_env="LM_API_TOKEN",
    model_hint="load it with `lms load MODEL`, or enable Just-In-Time model loading in LM Studio's "
               "developer settings",
    structured_modes=("json_schema", "text"),
    passes_extras=True,  # ttl, draft_model, top_k, min_p, repeat_penalty
    text_completions=True,
)


def base_id(model_id: str) -> str:
    """``qwen2.5-7b-instruct@q4_k_m`` -> ``qwen2.5-7b-instruct``."""
    return model_id.split("@", 1)[0]


def _stem(model_id: str) -> str:
    """A comparable name: no publisher path, no ``.gguf``, no quantization, no ``text-embedding-`` prefix,
    no ``@variant``, lower case."""
    name = base_id(model_id).rsplit("/", 1)[-1].lower().removesuffix(".gguf")
    name = _QUANT_SUFFIX.sub("", name)
    return name.removeprefix("text-embedding-").removesuffix("-gguf")


def is_path_id(model_id: str) -> bool:
    """mem0-style ids name a model file (``publisher/repo-GGUF/file.gguf``) rather than LM Studio's key."""
    return model_id.lower().endswith(".gguf") or model_id.count("/") >= 2


def resolve_variant(requested: str, available: list[str], paths: dict[str, str] | None = None) -> str | None:
    """The one listed id that ``requested`` names: itself, the same base id with another ``@`` suffix, or --
    for a path-style id -- the key whose file path ends with it (``paths``: key -> path, from the SDK), else
    the key with the same file stem. None when there is none or several."""
    if requested in available:
        return requested
    matches = [m for m in available if base_id(m) == base_id(requested)]
    if not matches and is_path_id(requested):
        wanted = requested.strip("/").lower()
        by_path = [key for key, path in (paths or {}).items()
                   if key in available and path.lower().strip("/").endswith(wanted)]
        matches = by_path or [m for m in available if _stem(m) == _stem(requested)]
    return matches[0] if len(matches) == 1 else None


def endpoint_of(client: OpenAICompatClient, config: ProviderConfig) -> Endpoint:
    """The management endpoint of the server ``client`` talks to."""
    api_key = client.headers.get("Authorization", "").removeprefix("Bearer ") or None
    proxies = tuple(proxy_routes(config.http_client_proxies).items())
    # the SDK's websocket does not go through an HTTP proxy: behind one, management stays on the REST API
    return Endpoint("lmstudio", "lmstudio", client.base_url.removesuffix("/v1"), api_key=api_key,
                    timeout=min(config.timeout, 10.0), connect_timeout=config.connect_timeout,
                    sdk=not proxies, proxies=proxies)


async def ensure_loaded(endpoint: Endpoint, model_id: str, *, context_length: int | None,
                        ttl: float | None) -> ModelInfo | None:
    """The record of ``model_id`` on ``endpoint`` after making sure it is loaded (loading it when it is not);
    None when the server's listing cannot tell (OpenAI ``/v1/models`` only) or does not name it, in which case
    the request goes ahead and LM Studio answers for itself."""
    async with client_for(endpoint) as client:
        driver = LMStudioDriver(endpoint, client)
        models, api = await driver.list_models()
        if api == OPENAI:
            return None
        found = [m for m in models if matches(m, model_id)]
        if len(found) != 1:
            return None
        model = found[0]
        if model.loaded:
            return model
        loaded = await driver.load(model, context_length=context_length, ttl=ttl)
    return dataclasses.replace(model, state=ModelState.LOADED, instances=(loaded,),
                               loaded_context_length=loaded.context_length)


class LMStudioChatModel(OpenAICompatChatModel):
    """Chat on LM Studio; see the module docstring for what happens around each request."""

    def __init__(self, client: OpenAICompatClient, model: str, *, endpoint: Endpoint,
                 load_context: int | None = None, ttl: float | None = None, **kwargs: Any) -> None:
        super().__init__(client, model, **kwargs)
        self.endpoint = endpoint
        self.load_context = load_context
        self.ttl = ttl
        self._checked = 0.0
        self._tokens = sdk.TokenCounter(endpoint)

    async def _ensure_loaded(self) -> None:
        if time.monotonic() - self._checked < ENSURE_EVERY:
            return

        async def check() -> ModelInfo | None:
            return await ensure_loaded(self.endpoint, self.model, context_length=self.load_context,
                                       ttl=self.ttl or JIT_DEFAULT_TTL)

        try:
            info = await single_flight("ensure", str(self.endpoint.url), self.model, check)
        except NetworkError:
            raise
        except MindgateError as exc:  # the request itself will say what is wrong, in LM Studio's words
            log.info("could not make %s loaded before the request: %s", self.model, exc)
            return
        self._checked = time.monotonic()
        if info is not None and info.loaded_context_length:
            self._context_length = info.loaded_context_length

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        """Prompt tokens by the loaded model's tokenizer through the SDK (ChatML framing), and its loaded
        context length on the way. None without the SDK (no tokenizer to offer); a MindgateError when the
        model is not loaded yet (ask again later: counting never loads a model, since a router may count for
        targets it will not use)."""
        if not await sdk.usable(self.endpoint):
            return None
        if self._context_length is None:
            self._context_length = await self._tokens.context_length(self.model)
        return await self._tokens.count(self.model, chatml_prompt(messages))

    async def aclose(self) -> None:
        await self._tokens.aclose()
        await super().aclose()

    async def _resolve_after(self, error: ModelNotFoundError) -> bool:
        """Retarget to the suffixed variant LM Studio lists; True when the model id changed."""
        paths = await _paths(self.endpoint) if is_path_id(self.model) else None
        match = resolve_variant(self.model, error.available, paths)
        if match is None or match == self.model:
            variants = [m for m in error.available if base_id(m) == base_id(self.model)]
            if len(variants) > 1:
                raise ModelNotFoundError(
                    f"model {self.model!r} is ambiguous on LM Studio: it lists {', '.join(variants)}",
                    available=error.available, provider="lmstudio", status_code=error.status_code,
                    hint="name the variant with its @quantization suffix") from None
            return False
        self.model = match
        return True

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        await self._ensure_loaded()
        try:
            return await super().acomplete(messages, **options)
        except ModelNotFoundError as exc:
            self._checked = 0.0
            if not await self._resolve_after(exc):
                raise
            return await super().acomplete(messages, **options)

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        await self._ensure_loaded()
        try:
            stream = super().astream(messages, **options)
            first = await anext(stream)
        except StopAsyncIteration:
            return
        except ModelNotFoundError as exc:
            self._checked = 0.0
            if not await self._resolve_after(exc):
                raise
            stream = super().astream(messages, **options)
            first = await anext(stream)
        yield first
        async for chunk in stream:
            yield chunk


    async def aresponses(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.native is not None:
            await self._ensure_loaded()  # with mindgate's context length and TTL, as for chat
        return await super().aresponses(body)

    async def aresponses_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if self.native is not None:
            await self._ensure_loaded()
        async for event in super().aresponses_stream(body):
            yield event


class LMStudioEmbedder(OpenAICompatEmbedder):
    def __init__(self, client: OpenAICompatClient, model: str, *, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(client, model, **kwargs)
        self.endpoint = endpoint

    async def _embed_batch(self, texts: Sequence[str]) -> Any:
        try:
            return await super()._embed_batch(texts)
        except ModelNotFoundError as exc:
            paths = await _paths(self.endpoint) if is_path_id(self.model) else None
            match = resolve_variant(self.model, exc.available, paths)
            if match is None or match == self.model:
                raise
            self.model = match
            return await super()._embed_batch(texts)


async def _paths(endpoint: Endpoint) -> dict[str, str]:
    """Model key -> file path, when the SDK lists them (REST listings carry no paths)."""
    if not await sdk.usable(endpoint):
        return {}
    try:
        return {m.id: m.path for m in await sdk.list_models(endpoint) if m.path}
    except MindgateError:
        return {}


def _extra(config: LMStudioConfig) -> dict[str, Any]:
    return {**({"ttl": config.ttl} if config.ttl else {}), **config.model_kwargs}


def chat_model(config: LMStudioConfig) -> ChatModel:
    """LM Studio chat; without ``model``, the model is detected at first use (see the module docstring)."""
    client = client_from_config(config, PROFILE, default_base_url=DEFAULT_BASE_URL)
    endpoint = endpoint_of(client, config)

    def build(model: str) -> LMStudioChatModel:
        return LMStudioChatModel(client, model, endpoint=endpoint, load_context=config.n_ctx, ttl=config.ttl,
                                 defaults=sampling_defaults(config), extra_body=_extra(config),
                                 responses_api=config.responses_api)

    if config.model:
        return build(config.model)

    async def detect() -> ChatModel:
        from mindgate.providers.management._detect import pick

        return build((await pick(endpoint, "chat")).id)

    return LazyChatModel("lmstudio", client.base_url, detect, defaults=sampling_defaults(config),
                         text_completions=True, responses_api=config.responses_api)


def embedder(config: LMStudioConfig) -> Embedder:
    """LM Studio embeddings; without ``model``, a loaded embedding model (else a downloaded one) is used."""
    client = client_from_config(config, PROFILE, default_base_url=DEFAULT_BASE_URL)
    endpoint = endpoint_of(client, config)

    def build(model: str) -> LMStudioEmbedder:
        return LMStudioEmbedder(client, model, endpoint=endpoint, embedding_dims=config.embedding_dims,
                                batch_size=config.batch_size, extra_body=_extra(config))

    if config.model:
        return build(config.model)

    async def detect() -> Embedder:
        from mindgate.providers.management._detect import pick

        return build((await pick(endpoint, "embedding")).id)

    return LazyEmbedder("lmstudio", detect, embedding_dims=config.embedding_dims, batch_size=config.batch_size)


SPEC = ProviderSpec(name="lmstudio", config_model=LMStudioConfig,
                    display=PROFILE.display, chat_model=chat_model, embedder=embedder,
                    base_url_keys=("lmstudio_base_url", "base_url"), default_base_url=DEFAULT_BASE_URL,
                    start_hint=PROFILE.start_hint, key_env=PROFILE.key_env, takes_top_k=True,
                    takes_reasoning_effort=True, driver=LMStudioDriver,
                    get_model_hint="download one with `mindgate models get MODEL`, or load one with `lms load MODEL`")
