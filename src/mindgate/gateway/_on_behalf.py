"""Model calls made on behalf of an API key: the key's model binding and token limit cover them.

A request's own chat call is checked by its route; the calls the gateway makes *for* a request (memory
extraction for ``POST /v1/memories`` with ``infer: true``, the background memory write after a chat,
summarisation, MCP tool loops) go through :func:`on_behalf`, which wraps the model:

* the key must be allowed the model's name (``models: [...]``), else a 403 naming both;
* with ``enforce`` (the default), each call is refused with a 429 while the key's token bucket is in debt;
  background work already admitted with its request passes ``enforce=False`` and is only charged;
* every call's usage (reported, or estimated from the text) is charged to the key's
  ``tokens_per_minute`` and counted in ``mindgate_tokens_total``.

With no key (auth off) the model is returned unwrapped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from mindgate.context._tokens import DEFAULT_ESTIMATOR
from mindgate.gateway._auth import Principal
from mindgate.gateway._state import Gateway
from mindgate.pipeline._remember import LLMFor
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message


def _estimate(text: str) -> int:
    return DEFAULT_ESTIMATOR.text_tokens(text) if text else 0


def _prompt_estimate(messages: Sequence[Message]) -> int:
    return DEFAULT_ESTIMATOR.prompt_tokens(messages)


class OnBehalf(ChatModel):
    """``inner`` used for ``principal`` under the name ``name`` (see the module docstring). Anything not
    defined here (``structured_modes``, ``context_length``, ...) is the inner model's."""

    def __init__(self, inner: ChatModel, *, gateway: Gateway, principal: Principal, name: str,
                 enforce: bool = True) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.provider = inner.provider
        self.gateway = gateway
        self.principal = principal
        self.name = name
        self.enforce = enforce

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    def __repr__(self) -> str:
        return f"{self.inner!r} on behalf of {self.principal.name!r}"

    @property
    def endpoint_key(self) -> str:
        return self.inner.endpoint_key

    @property
    def context_length(self) -> int | None:
        return self.inner.context_length

    def _admit(self) -> None:
        self.principal.check_model(self.name)
        if self.enforce:
            self.gateway.admit(self.principal, uses_tokens=True)

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        self._admit()
        response = await self.inner.acomplete(messages, **options)
        prompt, completion = response.usage.prompt_tokens, response.usage.completion_tokens
        if not (prompt or completion):
            prompt, completion = _prompt_estimate(messages), _estimate(response.content or "")
        self.gateway.charge(self.principal, self.name, prompt, completion)
        return response

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        self._admit()
        prompt = completion = 0
        parts: list[str] = []
        try:
            async for chunk in self.inner.astream(messages, **options):
                parts.append(chunk.content or "")
                if chunk.usage is not None:
                    prompt, completion = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                yield chunk
        finally:
            if not (prompt or completion):
                prompt, completion = _prompt_estimate(messages), _estimate("".join(parts))
            self.gateway.charge(self.principal, self.name, prompt, completion)

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        return await self.inner.acount_tokens(messages)

    async def aclose(self) -> None:
        """The inner model belongs to the gateway: not closed here."""


def on_behalf(gateway: Gateway, principal: Principal | None, model: ChatModel, name: str, *,
              enforce: bool = True) -> ChatModel:
    """``model`` (served under ``name``) for calls made for ``principal``: a 403 now when the key may not
    use ``name``; each call then checked (``enforce``) and charged. ``model`` itself when auth is off."""
    if principal is None:
        return model
    principal.check_model(name)
    return OnBehalf(model, gateway=gateway, principal=principal, name=name, enforce=enforce)


def memory_writes(gateway: Gateway, principal: Principal | None,
                  headers: dict[str, str]) -> tuple[bool, LLMFor | None]:
    """For a chat request (any API): whether its turn may be written to memory, and the ``memory_llm`` of
    its :class:`~mindgate.pipeline._core.ChatRequest` (the memory's LLM wrapped for the key, charged but not
    refused, since the request was admitted). A key that may not use the memory model is answered, but
    its turn is not remembered and ``X-Mindgate-Memory-Write`` (added to ``headers``) says why."""
    if principal is None:
        return True, None
    name = gateway.memory_model
    if not principal.allows_model(name):
        headers["X-Mindgate-Memory-Write"] = f"skipped: key may not use model {name}"
        return False, None
    return True, lambda llm: OnBehalf(llm, gateway=gateway, principal=principal, name=name, enforce=False)
