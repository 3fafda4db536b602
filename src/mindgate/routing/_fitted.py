"""A router bound to one request's fit stage (:meth:`mindgate.routing._router.Router.bind`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from mindgate.context._fit import ContextFitter
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message

if TYPE_CHECKING:
    from mindgate.routing._router import Router


class FittedRouter(ChatModel):
    """A :class:`Router` bound to one request's fit stage (:meth:`Router.bind`): every call (e.g. each call
    of a tool loop) is fitted per target; :attr:`fit` holds the report of the last one."""

    provider = "router"

    def __init__(self, router: Router, fit: ContextFitter) -> None:
        super().__init__(router.model, defaults=router.defaults)
        self.router = router
        self.fit = fit

    @property
    def endpoint_key(self) -> str:
        return self.router.endpoint_key

    @property
    def context_length(self) -> int | None:
        return self.router.context_length

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        return await self.router.acomplete(messages, fit=self.fit, **options)

    def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        return self.router.astream(messages, fit=self.fit, **options)

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        return await self.router.acount_tokens(messages)
