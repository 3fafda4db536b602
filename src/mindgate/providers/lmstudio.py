"""LM Studio's OpenAI-compatible surface (``/v1``), with its documented quirks handled.

* Structured output: LM Studio accepts ``response_format`` ``json_schema`` or ``text`` and answers
  ``json_object`` with HTTP 400, so ``json_object`` is never tried.
* Model ids may carry a quantization suffix (``qwen2.5-7b-instruct@q4_k_m``). A model asked for without
  (or with another) suffix is resolved to the single listed variant with the same base id; several
  variants are an error that lists them.
* ``/v1/embeddings`` takes strings only (token arrays are rejected before sending).
* With JIT loading off, a request for an unloaded model answers "No models loaded": that becomes a
  :class:`~mindgate.errors.ModelNotFoundError` saying to ``lms load`` it or enable JIT loading.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from mindgate.config import ProviderConfig
from mindgate.errors import ModelNotFoundError
from mindgate.providers.base import ChatChunk, ChatResponse, Message
from mindgate.providers.openai_compat import (
    OpenAICompatChatModel,
    OpenAICompatEmbedder,
    ServerProfile,
    client_from_config,
    require_model,
    sampling_defaults,
)

DEFAULT_BASE_URL = "http://localhost:1234/v1"

PROFILE = ServerProfile(
    provider="lmstudio",
    display="LM Studio",
    start_hint="start it with `lms server start` (or the Developer tab in the LM Studio app)",
    key_env="LM_API_TOKEN",
    model_hint="load it with `lms load MODEL`, or enable Just-In-Time model loading in LM Studio's "
               "developer settings",
    structured_modes=("json_schema", "text"),
)


def base_id(model_id: str) -> str:
    """``qwen2.5-7b-instruct@q4_k_m`` -> ``qwen2.5-7b-instruct``."""
    return model_id.split("@", 1)[0]


def resolve_variant(requested: str, available: list[str]) -> str | None:
    """The one listed id with the same base as ``requested``; None when there is none or several."""
    if requested in available:
        return requested
    matches = [m for m in available if base_id(m) == base_id(requested)]
    return matches[0] if len(matches) == 1 else None


class LMStudioChatModel(OpenAICompatChatModel):
    async def _resolve_after(self, error: ModelNotFoundError) -> bool:
        """Retarget to the suffixed variant LM Studio lists; True when the model id changed."""
        match = resolve_variant(self.model, error.available)
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
        try:
            return await super().acomplete(messages, **options)
        except ModelNotFoundError as exc:
            if not await self._resolve_after(exc):
                raise
            return await super().acomplete(messages, **options)

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        try:
            stream = super().astream(messages, **options)
            first = await anext(stream)
        except StopAsyncIteration:
            return
        except ModelNotFoundError as exc:
            if not await self._resolve_after(exc):
                raise
            stream = super().astream(messages, **options)
            first = await anext(stream)
        yield first
        async for chunk in stream:
            yield chunk


class LMStudioEmbedder(OpenAICompatEmbedder):
    async def _embed_batch(self, texts: Sequence[str]) -> Any:
        try:
            return await super()._embed_batch(texts)
        except ModelNotFoundError as exc:
            match = resolve_variant(self.model, exc.available)
            if match is None or match == self.model:
                raise
            self.model = match
            return await super()._embed_batch(texts)


def chat_model(config: ProviderConfig) -> LMStudioChatModel:
    client = client_from_config(config, PROFILE, default_base_url=DEFAULT_BASE_URL)
    model = require_model(config, "lmstudio", "qwen2.5-7b-instruct")
    return LMStudioChatModel(client, model, defaults=sampling_defaults(config),
                             extra_body={**({"ttl": config.ttl} if config.ttl else {}), **config.model_kwargs})


def embedder(config: ProviderConfig) -> LMStudioEmbedder:
    client = client_from_config(config, PROFILE, default_base_url=DEFAULT_BASE_URL)
    model = require_model(config, "lmstudio", "text-embedding-nomic-embed-text-v1.5")
    return LMStudioEmbedder(client, model, embedding_dims=config.embedding_dims, batch_size=config.batch_size,
                            extra_body={**({"ttl": config.ttl} if config.ttl else {}), **config.model_kwargs})
