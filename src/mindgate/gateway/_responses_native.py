"""``POST /v1/responses`` passed through to the serving target's own route (the wire side of
:mod:`mindgate.pipeline._passthrough`, which decides whether a request may pass and calls the target).

What the target gets: the client's request as it came (unknown fields included), with

* ``model`` replaced by the target's model id;
* ``previous_response_id`` resolved by mindgate, never forwarded: the stored conversation (owned by the
  acting user, like every stored response) is sent as input items before the new ``input``. So a
  continuation works on stateless servers (Ollama) and never reaches another user's conversation on a
  stateful one;
* ``store: false``: mindgate is the store of record. With the client's ``store`` (OpenAI's default true)
  the passed-through response, its input items and the conversation are kept in mindgate's store exactly as
  for a bridged one, so ``GET /v1/responses/{id}``, ``input_items``, ``DELETE`` and a later
  ``previous_response_id`` (passed through or bridged) work the same.

What the client gets: the target's ``response`` object, or its semantic events re-numbered (``sequence_number``
counts from 0 in the order sent), with ``previous_response_id`` and ``store`` as the client sent them. A
failure before the first event is an ordinary error response in OpenAI's shape (an upstream 4xx keeps its
status class and ``param``); after it, the stream ends with ``response.failed``, as on the bridge.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mindgate._json import dumps
from mindgate.errors import InvalidRequestError, MindgateError, NativeResponsesUnavailable
from mindgate.gateway._openai_responses import items_to_messages, new_id, output_messages, response_object
from mindgate.gateway._responses import EventStream, JSONBytes
from mindgate.gateway._schemas_responses import ResponsesRequest
from mindgate.gateway._state import Gateway
from mindgate.gateway._wire import SSE_HEADERS
from mindgate.pipeline._conversations import ResponseLog
from mindgate.pipeline._passthrough import NativeRequest, NativeStream, Routed, complete, route, stream
from mindgate.providers._base import Message, Usage

log = logging.getLogger("mindgate.gateway")

MODE_HEADER = "X-Mindgate-Responses"
"""How ``/v1/responses`` was served: ``native`` (passed through) or ``bridge`` with why it was not passed
through when it is configured to be (``bridge; memory`` ...)."""
_RESPONSE_EVENTS = frozenset({"response.created", "response.in_progress", "response.completed",
                              "response.incomplete", "response.failed", "response.queued"})
_MINDGATE_FIELDS = {"memory", "mindgate", "stream"}


def history_items(messages: list[Message]) -> list[dict[str, Any]]:
    """A stored conversation (chat messages) as Responses input items: messages (text parts as
    ``input_text`` / ``output_text``, images as ``input_image``), tool calls as ``function_call`` items and tool
    results as ``function_call_output`` items."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": message.get("tool_call_id"),
                          "output": _text(message.get("content"))})
            continue
        content = message.get("content")
        if isinstance(content, list) and role == "user":
            parts = [{"type": "input_image", "image_url": (p.get("image_url") or {}).get("url")}
                     if p.get("type") == "image_url" else {"type": "input_text", "text": str(p.get("text", ""))}
                     for p in content if isinstance(p, dict)]
            items.append({"role": "user", "content": parts})
        elif content:
            items.append({"role": role, "content": _text(content)})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            items.append({"type": "function_call", "call_id": call.get("id"), "name": function.get("name"),
                          "arguments": function.get("arguments") or "{}"})
    return items


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p)
    return "" if content is None else str(content)


def conversation(items: list[dict[str, Any]]) -> list[Message]:
    """Input or output items as chat messages, leaving out what chat has no form for (hosted tool calls,
    ``input_file`` parts, item references): the conversation mindgate keeps, routes by and sizes."""
    kept = []
    for item in items:
        try:
            items_to_messages([item])
        except InvalidRequestError:
            continue
        kept.append(item)
    return items_to_messages(kept)


def upstream_body(body: ResponsesRequest, history: list[Message]) -> dict[str, Any]:
    """What the target gets (see the module docstring)."""
    sent = {k: v for k, v in body.model_dump(exclude_none=True).items() if k not in _MINDGATE_FIELDS}
    sent.pop("previous_response_id", None)
    if history:
        raw = body.input if isinstance(body.input, list) else [{"role": "user", "content": body.input}]
        sent["input"] = history_items(history) + list(raw)
    sent["store"] = False
    return sent


class NativeTurn:
    """One passed-through request: what is kept with ``store`` and how the target's answer is shown."""

    def __init__(self, gateway: Gateway, body: ResponsesRequest, owner: str | None, items: list[dict[str, Any]],
                 history: list[Message]) -> None:
        self.gateway = gateway
        self.body = body
        self.owner = owner
        self.items = items
        self.history = history

    def shown(self, response: dict[str, Any]) -> dict[str, Any]:
        """The target's response object as this client sent its request."""
        return {**response, "previous_response_id": self.body.previous_response_id, "store": self.body.store}

    async def keep(self, responses: ResponseLog | None, response: dict[str, Any]) -> None:
        if responses is None or not self.body.store or not response.get("id"):
            return
        context = self.history + conversation(self.items) + output_messages(
            [i for i in response.get("output") or [] if isinstance(i, dict) and i.get("type") in ("message",
                                                                                                   "function_call")])
        try:
            await responses.save(response, self.owner, self.items, context)
        except MindgateError as exc:
            log.error("storing response %s failed (it cannot be retrieved or continued): %s", response["id"], exc)


def configured(gateway: Gateway) -> bool:
    """Whether any target of this gateway may pass Responses requests through (else none is tried). The
    config's part is read once per gateway; the default model is asked each time (a lazily resolved model
    may change its answer)."""
    return gateway.responses_api_configured or gateway.targets.default.passes_responses


@dataclass
class Passed:
    """A passed-through answer: the target it went to, the HTTP response, and (not streamed) its usage and the
    model that answered."""

    routed: Routed
    response: JSONBytes | EventStream
    usage: Usage | None = None
    served_by: str | None = None


async def pass_through(gateway: Gateway, turn: NativeTurn, request: NativeRequest,
                       headers: dict[str, str]) -> Passed | None:
    """The answer passed through, or None (with ``headers`` saying why) when the request is to be bridged."""
    routed = await route(gateway.pipeline, request)
    if isinstance(routed, str):
        headers[MODE_HEADER] = f"bridge; {routed}"
        return None
    try:
        if turn.body.stream:
            events = await stream(gateway.pipeline, request, routed)
        else:
            result = await complete(gateway.pipeline, request, routed)
    except NativeResponsesUnavailable:
        headers[MODE_HEADER] = "bridge; target"
        return None
    headers[MODE_HEADER] = "native"
    if turn.body.stream:
        frames = _frames(turn, events, request.request_id)
        return Passed(routed, EventStream(frames, headers={**SSE_HEADERS, **headers}))
    shown = turn.shown(result.response)
    await turn.keep(gateway.responses, shown)
    return Passed(routed, JSONBytes(shown, headers=headers), result.usage, str(shown.get("model") or ""))


def _frame(event: dict[str, Any], sequence: int) -> bytes:
    event["sequence_number"] = sequence
    kind = str(event.get("type"))
    return b"event: " + kind.encode() + b"\ndata: " + dumps(event) + b"\n\n"


async def _frames(turn: NativeTurn, events: NativeStream, rid: str | None) -> AsyncIterator[bytes]:
    sequence = 0
    snapshot: dict[str, Any] | None = None
    try:
        async for event in events:
            if event.get("type") in _RESPONSE_EVENTS and isinstance(event.get("response"), dict):
                event["response"] = snapshot = turn.shown(event["response"])
                if event["type"] in ("response.completed", "response.incomplete"):
                    await turn.keep(turn.gateway.responses, snapshot)
            yield _frame(event, sequence)
            sequence += 1
    except Exception as exc:
        if isinstance(exc, MindgateError):
            log.warning("passed-through response stream of request %s failed mid-way: %s", rid, exc)
            message = str(exc)
        else:
            log.error("passed-through response stream of request %s failed mid-way", rid, exc_info=sys.exc_info())
            message = f"the stream failed: {type(exc).__name__}; request id {rid}"
        failed = {**(snapshot or response_object(turn.body.echo(), response_id=new_id("resp"), model=turn.body.model,
                                                 status="failed", output=[], usage=None)),
                  "status": "failed", "error": {"code": "server_error", "message": message}}
        yield _frame({"type": "response.failed", "response": failed}, sequence)
    finally:
        await events.aclose()
