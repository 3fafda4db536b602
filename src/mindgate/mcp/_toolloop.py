"""The server-side tool loop: call the model with the gateway's tools, run the calls it makes, feed the
results back, and repeat until it answers (or the step budget is spent).

Contracts:

* At most ``max_steps`` model calls are offered the gateway's tools; one more call without them asks for
  the answer (a model that still asks for them gets nothing run, and the trace says ``stopped``). At
  most ``max_calls_per_step`` calls of one step run (concurrently); extra ones get an error result. Every
  tool failure is a result the model reads (see :class:`~mindgate.mcp._toolbox.Toolbox`).
* Calls of tools the *client* sent are not run here: the response that makes them goes back to the client
  as usual (after the gateway's own calls of the same step have run), so client-side tools keep working.
* The executed calls are visible: the final completion carries ``mindgate.tool_calls`` (and
  ``mindgate.steps``); a stream carries one chunk per executed call with an empty delta and
  ``mindgate.tool_call``, and its finishing chunk carries the whole ``mindgate`` trace. ``usage`` is the
  sum over all model calls (streamed as the last chunk when the upstream reports usage).
* A streamed answer is relayed as it is generated, every step's text included; tool-call deltas of the
  gateway's own tools and intermediate finish/usage chunks are held back, and chunk ids are the first
  step's so a client sees one completion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mindgate.config import ToolLoopSettings
from mindgate.mcp._client import ToolServers
from mindgate.mcp._toolbox import Toolbox, ToolRecord, build_toolbox
from mindgate.mcp._tools import MemoryTools, ScopeArgs
from mindgate.pipeline._stages import DirectCall
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message, Usage

if TYPE_CHECKING:
    from mindgate.pipeline._core import ChatRequest

Complete = Callable[[list[Message], dict[str, Any]], Awaitable[ChatResponse]]
Stream = Callable[[list[Message], dict[str, Any]], AsyncIterator[ChatChunk]]


@dataclass
class LoopState:
    """What the loop has done so far (shared by the streaming and the non-streaming form)."""

    messages: list[Message]
    options: dict[str, Any]
    toolbox: Toolbox
    settings: ToolLoopSettings
    records: list[ToolRecord] = field(default_factory=list)
    steps: int = 0
    stopped: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def step_options(self) -> dict[str, Any]:
        """Options of the next model call: the client's tools plus the gateway's; only the client's once the
        step budget is spent."""
        if self.steps >= self.settings.max_steps:
            return self.options
        client_tools = list(self.options.get("tools") or [])
        return {**self.options, "tools": client_tools + self.toolbox.openai_tools()}

    def add_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def trace(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tool_calls": [r.as_dict() for r in self.records], "steps": self.steps}
        if self.stopped:
            out["stopped"] = self.stopped
        if self.toolbox.unavailable:
            out["unavailable_servers"] = dict(self.toolbox.unavailable)
        return out

    async def run_calls(self, content: str | None, calls: list[dict[str, Any]]) -> list[ToolRecord]:
        """Run the gateway's calls of one step and append the exchange to the conversation."""
        step = self.steps
        ids = [str(c.get("id") or f"call_{step}_{i}") for i, c in enumerate(calls)]
        normalized: list[dict[str, Any]] = [{"id": ids[i], "type": "function",
                                             "function": dict(c.get("function") or {})} for i, c in enumerate(calls)]
        limit = self.settings.max_calls_per_step
        records = list(await asyncio.gather(*(self.toolbox.run(c, ids[i])
                                              for i, c in enumerate(normalized[:limit]))))
        for i, call in enumerate(normalized[limit:], start=limit):
            name = str(call["function"].get("name", ""))
            records.append(ToolRecord(ids[i], name, "-", name, str(call["function"].get("arguments", "")),
                                      f"at most {limit} tool calls run per step; call it again in the next step",
                                      True, 0.0))
        self.messages.append({"role": "assistant", "content": content or None, "tool_calls": normalized})
        self.messages.extend(r.message() for r in records)
        self.records.extend(records)
        return records


def _split(state: LoopState, calls: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the gateway's calls, the client's calls). A call of a tool nobody offered counts as the gateway's:
    it is answered with an error the model can read rather than handed to a client that never sent it."""
    client = {t.get("function", {}).get("name") for t in state.options.get("tools") or [] if isinstance(t, dict)}
    mine = [c for c in calls if (c.get("function") or {}).get("name") not in client]
    theirs = [c for c in calls if (c.get("function") or {}).get("name") in client]
    return mine, theirs


async def complete_with_tools(complete: Complete, messages: list[Message], options: dict[str, Any],
                              toolbox: Toolbox, settings: ToolLoopSettings) -> ChatResponse:
    """Run the loop with non-streaming model calls; the final response carries the trace and summed usage."""
    state = LoopState(list(messages), dict(options), toolbox, settings)
    while True:
        spent = state.steps >= settings.max_steps
        response = await complete(state.messages, state.step_options())
        state.add_usage(response.usage)
        state.steps += 1
        mine, theirs = _split(state, response.tool_calls)
        if spent and mine:  # tools were no longer offered and the model still asked: nothing runs
            state.stopped = "max_steps"
            response = _only_calls(response, theirs)
            break
        if not mine:
            break
        await state.run_calls(response.content, mine)
        if theirs:
            response = _only_calls(response, theirs)
            break
    raw = dict(response.raw) if response.raw else {}
    raw["usage"] = state.usage
    raw["mindgate"] = state.trace()
    return ChatResponse(response.content, response.model, response.finish_reason, response.tool_calls,
                        Usage(state.prompt_tokens, state.completion_tokens), raw)


def _only_calls(response: ChatResponse, calls: list[dict[str, Any]]) -> ChatResponse:
    """``response`` with only ``calls`` left as its tool calls (the client's, after the gateway ran its own;
    none left means a plain answer)."""
    raw = dict(response.raw)
    choices = [dict(c) for c in raw.get("choices") or [{}]]
    message = {k: v for k, v in (choices[0].get("message") or {}).items() if k != "tool_calls"}
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else "stop"
    choices[0] = {**choices[0], "message": message, "finish_reason": finish}
    raw["choices"] = choices
    return ChatResponse(response.content, response.model, finish, calls, response.usage, raw)


# -- streaming --------------------------------------------------------------------------------------------


@dataclass
class _StepStream:
    """Accumulates one streamed step: its text and the gateway's tool calls (by delta index)."""

    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    foreign: set[int] = field(default_factory=set)
    text: list[str] = field(default_factory=list)
    client_calls: bool = False

    def absorb(self, state: LoopState, deltas: list[dict[str, Any]], client: set[str]) -> list[dict[str, Any]]:
        """Take the gateway's call deltas; return the deltas to forward (the client's)."""
        forward = []
        for delta in deltas:
            index = int(delta.get("index", 0))
            function = delta.get("function") or {}
            if index not in self.calls and index not in self.foreign:
                if function.get("name") in client:
                    self.foreign.add(index)
                    self.client_calls = True
                else:
                    self.calls[index] = {"id": delta.get("id"), "function": {"name": "", "arguments": ""}}
            if index in self.foreign:
                forward.append(delta)
                continue
            call = self.calls[index]
            call["id"] = call["id"] or delta.get("id")
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""
        return forward


def _event(raw: dict[str, Any], first_id: str | None, choice: dict[str, Any] | None = None) -> dict[str, Any]:
    out = dict(raw)
    if first_id is not None:
        out["id"] = first_id
    if choice is not None:
        out["choices"] = [choice]
    return out


async def stream_with_tools(stream: Stream, messages: list[Message], options: dict[str, Any], toolbox: Toolbox,
                            settings: ToolLoopSettings) -> AsyncIterator[ChatChunk]:
    """Run the loop with streaming model calls, relaying the answer as it comes (see the module docstring)."""
    state = LoopState(list(messages), dict(options), toolbox, settings)
    client = {t.get("function", {}).get("name") for t in options.get("tools") or [] if isinstance(t, dict)}
    first_id: str | None = None
    template: dict[str, Any] = {}
    usage_seen = False
    while True:
        spent = state.steps >= settings.max_steps
        step = _StepStream()
        held_finish: dict[str, Any] | None = None
        async for chunk in stream(state.messages, state.step_options()):
            raw = chunk.raw
            if first_id is None and raw.get("id"):
                first_id = str(raw["id"])
                template = {k: raw[k] for k in ("object", "created", "model") if k in raw}
            rewrite = state.steps > 0 and first_id is not None and raw.get("id") != first_id
            if chunk.usage is not None:
                state.add_usage(chunk.usage)
                usage_seen = True
                if not raw.get("choices"):
                    continue  # a usage-only chunk: the summed one is sent at the very end
            forward = step.absorb(state, chunk.tool_calls, client) if chunk.tool_calls else None
            if chunk.content:
                step.text.append(chunk.content)
            if chunk.finish_reason is not None:
                held_finish = raw  # sent once the step is known to be the last; its text and calls go now
                if not chunk.content and not forward:
                    continue
                forward = forward or []
            if forward is not None:
                if not forward and not chunk.content:
                    continue
                choice = {**raw["choices"][0], "finish_reason": None}
                choice["delta"] = {**choice.get("delta", {}), "tool_calls": forward} if forward else \
                    {k: v for k, v in choice.get("delta", {}).items() if k != "tool_calls"}
                yield ChatChunk(content=chunk.content, tool_calls=forward, raw=_event(raw, first_id, choice))
            elif rewrite:
                yield ChatChunk(content=chunk.content, raw=_event(raw, first_id))
            else:
                yield chunk
        state.steps += 1
        mine = [step.calls[i] for i in sorted(step.calls)]
        if mine and spent:
            state.stopped = "max_steps"
        elif mine:
            records = await state.run_calls("".join(step.text), mine)
            for record in records:
                yield _trace_chunk(template, first_id, record)
            if not step.client_calls:
                continue
        finish = "tool_calls" if step.client_calls else (
            held_finish["choices"][0].get("finish_reason") if held_finish is not None else "stop")
        base = held_finish if held_finish is not None else {**template, "choices": [{"index": 0}]}
        choice = {**base["choices"][0], "finish_reason": finish, "delta": {}}
        yield ChatChunk(finish_reason=finish, raw={**_event(base, first_id, choice), "mindgate": state.trace()})
        break
    if usage_seen:
        final = {**template, "id": first_id, "choices": [], "usage": state.usage}
        yield ChatChunk(usage=Usage(state.prompt_tokens, state.completion_tokens), raw=final)


def _trace_chunk(template: dict[str, Any], first_id: str | None, record: ToolRecord) -> ChatChunk:
    raw = {**template, "id": first_id, "created": template.get("created", int(time.time())),
           "choices": [{"index": 0, "delta": {}, "finish_reason": None}],
           "mindgate": {"tool_call": record.as_dict()}}
    return ChatChunk(raw=raw)


# -- the pipeline's call stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolRequest:
    """What one request opted into (the route builds it; ``request.stage_options["tools"]``).

    ``servers``: configured server names, already checked against the API key; ``key_tools``: the key's
    ``server.tool`` allowlist (None: all); ``memory_scope``: offer ``search_memory`` over this scope;
    ``on_behalf``: wraps the routed model so every call of the loop is checked and charged for the API key
    (the gateway's :func:`~mindgate.gateway._on_behalf.on_behalf`)."""

    servers: tuple[str, ...] = ()
    key_tools: tuple[str, ...] | None = None
    memory_scope: ScopeArgs | None = None
    on_behalf: Callable[[ChatModel], ChatModel] | None = None


class ToolLoopCall:
    """The pipeline's call stage (:class:`~mindgate.pipeline._stages.ModelCall`) with the server-side tool
    loop: a request without a :class:`ToolRequest` (or whose tools all failed to start) is one
    :class:`~mindgate.pipeline._stages.DirectCall` (which also serves structured-output requests)."""

    def __init__(self, servers: ToolServers | None, memory: MemoryTools | None, settings: ToolLoopSettings) -> None:
        self.servers = servers
        self.memory = memory
        self.settings = settings
        self.direct = DirectCall()

    async def _toolbox(self, model: ChatModel, request: ChatRequest,
                       options: dict[str, Any]) -> tuple[ChatModel, Toolbox | None]:
        spec = request.stage_options.get("tools")
        if not isinstance(spec, ToolRequest):
            return model, None
        client = [t.get("function", {}).get("name", "") for t in options.get("tools") or [] if isinstance(t, dict)]
        box = await build_toolbox(self.servers, spec.servers, key_tools=spec.key_tools,
                                  memory=self.memory if spec.memory_scope else None,
                                  memory_scope=spec.memory_scope, client_tools=client)
        return (spec.on_behalf(model) if spec.on_behalf is not None else model), box

    async def complete(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
                       request: ChatRequest) -> ChatResponse:
        model, box = await self._toolbox(model, request, options)
        if box is None:
            return await self.direct.complete(model, messages, options, request)
        return await complete_with_tools(lambda m, o: model.acomplete(m, **o), messages, options, box,
                                         self.settings)

    def stream(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
               request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if not isinstance(request.stage_options.get("tools"), ToolRequest):
            return self.direct.stream(model, messages, options, request)  # no layer of its own per chunk
        return self._stream_with_tools(model, messages, options, request)

    async def _stream_with_tools(self, model: ChatModel, messages: list[Message], options: dict[str, Any],
                                 request: ChatRequest) -> AsyncIterator[ChatChunk]:
        model, box = await self._toolbox(model, request, options)
        chunks = self.direct.stream(model, messages, options, request) if box is None else stream_with_tools(
            lambda m, o: model.astream(m, **o), messages, options, box, self.settings)
        async for chunk in chunks:
            yield chunk
