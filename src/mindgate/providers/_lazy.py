"""Models found at first use: a chat model or embedder whose model id is detected (e.g. "the loaded LLM the
server lists") only when the first request needs it.

A failed resolution raises and is tried again at the next use, so a router counts it against the target
like any failed call. Until resolved, ``model`` reads ``"(auto-detected)"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Embedder, Message, Vector

UNRESOLVED = "(auto-detected)"


class LazyChatModel(ChatModel):
    """A chat model built by ``resolve`` at first use; every call is delegated to it."""

    def __init__(self, provider: str, url: str, resolve: Callable[[], Awaitable[ChatModel]], *,
                 model: str | None = None, defaults: dict[str, Any] | None = None,
                 text_completions: bool = False, responses_api: str = "bridge") -> None:
        """``text_completions``: whether the server has raw completion whatever model is found (LM Studio,
        Ollama); ``responses_api``: the provider config's key (whether Responses requests may be passed through);
        once resolved, the found model's own answers count."""
        super().__init__(model or UNRESOLVED, defaults=defaults)
        self.provider = provider
        self.url = url
        self._resolve = resolve
        self._resolved: ChatModel | None = None
        self._text_completions = text_completions
        self._passes_responses = responses_api != "bridge"

    @property
    def endpoint_key(self) -> str:
        return self._resolved.endpoint_key if self._resolved else f"{self.provider}:{self.url}:{self.model}"

    @property
    def context_length(self) -> int | None:
        return self._resolved.context_length if self._resolved else None

    @property
    def structured_modes(self) -> tuple[str, ...] | None:
        return getattr(self._resolved, "structured_modes", None)

    @property
    def resolved_model(self) -> ChatModel | None:
        """The model found at first use; None before it (no lookup is started)."""
        return self._resolved

    async def resolved(self) -> ChatModel:
        if self._resolved is None:
            self._resolved = await self._resolve()
            self.model = self._resolved.model
        return self._resolved

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        return await (await self.resolved()).acomplete(messages, **options)

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        async for chunk in (await self.resolved()).astream(messages, **options):
            yield chunk

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        return await (await self.resolved()).acount_tokens(messages)

    @property
    def text_completions(self) -> bool:
        return self._resolved.text_completions if self._resolved else self._text_completions

    async def atext_complete(self, prompt: str, **options: Any) -> dict[str, Any]:
        return await (await self.resolved()).atext_complete(prompt, **options)

    async def atext_stream(self, prompt: str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        async for chunk in (await self.resolved()).atext_stream(prompt, **options):
            yield chunk

    @property
    def passes_responses(self) -> bool:
        return self._resolved.passes_responses if self._resolved else self._passes_responses

    async def aresponses(self, body: dict[str, Any]) -> dict[str, Any]:
        return await (await self.resolved()).aresponses(body)

    async def aresponses_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for event in (await self.resolved()).aresponses_stream(body):
            yield event

    async def ahealth_check(self) -> None:
        """Raises when the server is down: resolves the model, or lists the server's models again."""
        if self._resolved is None:
            await self.resolved()
            return
        client = getattr(self._resolved, "client", None)
        if client is not None and hasattr(client, "list_models"):
            await client.list_models()

    async def aclose(self) -> None:
        if self._resolved is not None:
            await self._resolved.aclose()


class LazyEmbedder(Embedder):
    """An embedder built by ``resolve`` at first use. ``model`` names the detected model from then on (so a
    store records the real model id: :meth:`aidentity` embeds first)."""

    def __init__(self, provider: str, resolve: Callable[[], Awaitable[Embedder]], *,
                 embedding_dims: int | None = None, batch_size: int = 64) -> None:
        super().__init__(UNRESOLVED, embedding_dims=embedding_dims, batch_size=batch_size)
        self.provider = provider
        self._resolve = resolve
        self._resolved: Embedder | None = None

    async def resolved(self) -> Embedder:
        if self._resolved is None:
            self._resolved = await self._resolve()
            self.model = self._resolved.model
        return self._resolved

    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        inner = await self.resolved()
        vectors = await inner._embed_batch(texts)
        self.model = inner.model  # the inner embedder may have retargeted to a suffixed variant
        return vectors

    async def aclose(self) -> None:
        if self._resolved is not None:
            await self._resolved.aclose()
