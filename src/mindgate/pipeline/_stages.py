"""The pipeline's two pluggable stages, as protocols with today's defaults.

* **fit context** (:class:`ContextFitter`, stage 3): given the messages after memory recall and the chat
  model the request was routed to, return :class:`Fitted`: the messages and the model to call. The
  pipeline's is :class:`~mindgate.pipeline._fitting.FitContext` (the context policies of
  :mod:`mindgate.context`; a routed chain comes back bound to the request's fit, so each target the router
  tries gets the request fitted to its own window). :class:`KeepContext` changes nothing (the router still
  skips targets whose window cannot hold the prompt). Per-request options come from
  ``request.stage_options["fit"]``.
* **call the model** (:class:`ModelCall`, stage 5): one answer from the routed model. The default,
  :class:`DirectCall`, is a single ``acomplete`` / ``astream``. A server-side tool loop (tools the gateway
  runs itself, e.g. MCP tools) plugs in here: it calls the model, runs the tool calls it owns, appends
  the results and calls again, and hands the client only the final answer (or the tool calls that are the
  client's); its per-request options come from ``request.stage_options["tools"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mindgate.context._fit import FitReport
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message
from mindgate.providers._structured import complete_structured

if TYPE_CHECKING:
    from mindgate.pipeline._core import ChatRequest


def no_report() -> FitReport | None:
    return None


@dataclass
class Fitted:
    """Stage 3's result: the ``messages`` and the ``model`` to call (the routed model, or a view of it that
    fits each call per target), and ``report()``: what the fit did (known after the call for a chain)."""

    messages: list[Message]
    model: ChatModel
    report: Callable[[], FitReport | None] = no_report


class ContextFitter(Protocol):
    """Stage 3: fit the prompt into the routed model's context window."""

    async def fit(self, messages: list[Message], model: ChatModel, request: ChatRequest) -> Fitted:
        """What to call with what (``messages`` itself when it fits); raise
        :class:`~mindgate.errors.ContextOverflowError` (with sizes and what to do) when the policy is to
        refuse. Must not mutate ``messages``."""
        ...


class KeepContext:
    """Sends the messages as they are (the router still refuses a prompt no target can hold)."""

    async def fit(self, messages: list[Message], model: ChatModel, request: ChatRequest) -> Fitted:
        return Fitted(messages, model)


class ModelCall(Protocol):
    """Stage 5: get the answer from the routed model."""

    async def complete(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
                       request: ChatRequest) -> ChatResponse:
        """One finished answer."""
        ...

    def stream(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
               request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer as OpenAI chunks; errors before or during the stream raise."""
        ...


class DirectCall:
    """One call to the model, no server-side tools.

    ``request.stage_options["json_schema"] = {"name": ..., "schema": {...}}`` asks for JSON output through
    the structured-output ladder (json_schema, then json_object, then the schema in the prompt; see
    :mod:`mindgate.providers._structured`); such an answer is produced whole and streamed as one chunk."""

    async def complete(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
                       request: ChatRequest) -> ChatResponse:
        spec = request.stage_options.get("json_schema")
        if spec is not None:
            return await complete_structured(model, messages, spec["schema"], name=spec.get("name", "response"),
                                             **options)
        return await model.acomplete(messages, **options)

    def stream(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
               request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if request.stage_options.get("json_schema") is not None:
            return self._whole(model, messages, options, request)
        return model.astream(messages, **options)

    async def _whole(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
                     request: ChatRequest) -> AsyncIterator[ChatChunk]:
        response = await self.complete(model, messages, options, request)
        yield ChatChunk(content=response.content, finish_reason=response.finish_reason, usage=response.usage)
