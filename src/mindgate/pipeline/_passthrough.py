"""Responses API pass-through: a ``/v1/responses`` request sent to the serving target's own route, when the
target's provider config allows it (``responses_api: native | auto``) and nothing in the request needs
mindgate's help.

The request needs mindgate's help -- and is bridged onto chat completions by the caller -- when
(:func:`bridge_reason`):

* it acts for a user with memory on: recall and the background memory write (``memory``);
* gateway-run tools are offered (MCP tool servers, the ``search_memory`` tool): the tool loop (``tools``);
* the client chose a context policy (``X-Mindgate-Context``, ``mindgate.context``), or the conversation may
  not fit the target's known window, so the fit stage must act (``context``);
* the chain's first available target does not pass through, or (``auto``) turned out to have no such route
  (``target``).

Otherwise: route -> call the target's ``/v1/responses`` (the chain walked with its breakers and fallbacks:
:mod:`mindgate.routing._responses`) -> usage (the upstream's ``input_tokens`` / ``output_tokens``, else the
estimate) to ``on_usage`` once. What the request says is the caller's to prepare (:class:`NativeRequest`);
storing the answer, too (``store``: the gateway keeps passed-through responses as it keeps bridged ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mindgate.errors import MindgateError, NativeResponsesUnavailable
from mindgate.pipeline._events import UpstreamEvents, count_upstream_error
from mindgate.pipeline._scope import ChatScope
from mindgate.providers._base import ChatModel, Message, Usage

if TYPE_CHECKING:
    from mindgate.pipeline._core import Pipeline, UsageSink

_CONTEXT_MARGIN = 1.1  # the estimate is rough: keep a tenth of the window in hand before trusting it


@dataclass
class NativeRequest:
    """A Responses request that may be passed through.

    ``body`` is the Responses request as the upstream gets it (its ``model`` is replaced by each target's
    model id); ``messages`` the same conversation as chat messages (semantic routing, the size check);
    ``scope`` and ``stage_options`` as in :class:`~mindgate.pipeline._core.ChatRequest` (any of them set
    means mindgate's help is needed)."""

    model: str
    body: dict[str, Any]
    messages: list[Message]
    scope: ChatScope | None = None
    stage_options: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    on_usage: UsageSink | None = None


@dataclass
class Routed:
    """The target a request passes through to, and its metrics label."""

    model: ChatModel
    label: str


def bridge_reason(request: NativeRequest) -> str | None:
    """Why the request needs mindgate's help before any routing (None: it may pass through)."""
    if request.scope is not None:
        return "memory"
    if request.stage_options.get("tools"):
        return "tools"
    if request.stage_options.get("fit"):
        return "context"
    return None


async def route(pipeline: Pipeline, request: NativeRequest) -> Routed | str:
    """The target to pass ``request`` through to, or why it is bridged (see the module docstring)."""
    reason = bridge_reason(request)
    if reason is not None:
        return reason
    model = await pipeline.targets.resolve(request.model, request.messages)
    if not model.passes_responses:
        return "target"
    window = model.context_length
    if window is not None:
        wanted = pipeline.estimator.prompt_tokens(request.messages) + int(request.body.get("max_output_tokens") or 0)
        if wanted * _CONTEXT_MARGIN > window:
            return "context"
    return Routed(model, pipeline.targets.label(request.model))


def reported_usage(response: Any) -> Usage | None:
    """The Responses ``usage`` of a response object (None when it reports none)."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    counts = [usage.get("input_tokens"), usage.get("output_tokens")]
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts) or not any(counts):
        return None
    return Usage(int(counts[0] or 0), int(counts[1] or 0))


def output_text(response: dict[str, Any]) -> str:
    """The text of a response object's output messages (for a usage estimate)."""
    return "".join(str(part.get("text") or "") for item in response.get("output") or [] if isinstance(item, dict)
                   for part in item.get("content") or [] if isinstance(part, dict))


@dataclass
class NativeResult:
    """A passed-through answer: the upstream's ``response`` object and its usage (the upstream's, else
    estimated)."""

    response: dict[str, Any]
    usage: Usage


def _usage(pipeline: Pipeline, request: NativeRequest, response: dict[str, Any] | None, text: str) -> Usage:
    reported = reported_usage(response)
    if reported is not None:
        return reported
    return Usage(pipeline.estimator.prompt_tokens(request.messages),
                 pipeline.estimator.text_tokens(text) if text else 0)


async def complete(pipeline: Pipeline, request: NativeRequest, routed: Routed) -> NativeResult:
    """Call the target's ``/v1/responses``; :class:`NativeResponsesUnavailable` means: bridge it instead."""
    try:
        response = await routed.model.aresponses(request.body)
    except NativeResponsesUnavailable:
        raise
    except MindgateError as exc:
        count_upstream_error(pipeline, exc)
        raise
    usage = _usage(pipeline, request, response, output_text(response))
    if request.on_usage is not None:
        request.on_usage(routed.label, usage.prompt_tokens, usage.completion_tokens)
    return NativeResult(response, usage)


class NativeStream(UpstreamEvents):
    """The target's Responses events, as dicts; :meth:`aclose` (always call it) closes the upstream and
    reports usage once. After the terminal event ``final`` is the response object it carried. A
    :class:`NativeResponsesUnavailable` from :meth:`start` means nothing was served: the caller bridges (and
    charges) instead."""

    def __init__(self, pipeline: Pipeline, request: NativeRequest, routed: Routed) -> None:
        super().__init__(pipeline, routed.model.aresponses_stream(request.body))
        self.request = request
        self.routed = routed
        self._parts: list[str] = []
        self.final: dict[str, Any] | None = None
        self.usage: Usage | None = None

    def _unserved(self, exc: MindgateError) -> bool:
        return isinstance(exc, NativeResponsesUnavailable)

    def _seen(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            self._parts.append(str(event.get("delta") or ""))
        elif isinstance(event.get("response"), dict) and kind in ("response.completed", "response.incomplete",
                                                                 "response.failed"):
            self.final = event["response"]

    def _settle(self) -> None:
        self.usage = _usage(self.pipeline, self.request, self.final, "".join(self._parts))
        if self.request.on_usage is not None:
            self.request.on_usage(self.routed.label, self.usage.prompt_tokens, self.usage.completion_tokens)


async def stream(pipeline: Pipeline, request: NativeRequest, routed: Routed) -> NativeStream:
    events = NativeStream(pipeline, request, routed)
    await events.start()
    return events
