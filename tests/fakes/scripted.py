"""A SCRIPTED UPSTREAM: a tiny real HTTP server speaking OpenAI chat completions whose answers come from a
script, not a model. Used where a test needs an upstream to return specific tool calls (a 135M model
cannot be relied on to call a tool) or to fail in a specific way. Not a vendor fake: the shapes are
OpenAI's documented chat completion and ``chat.completion.chunk`` objects (tool calls streamed as
``delta.tool_calls`` with an ``index``, arguments in pieces, ``finish_reason: "tool_calls"``).

Each request takes the next step of ``script``: a string is a text answer, a :class:`ToolCall` is one
tool call, ``CUT`` streams two chunks and then drops the connection (an upstream crash mid-answer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fakes._server import ASGIApp, FakeServer

CUT = object()


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = "call_scripted_1"


class ScriptedUpstream(FakeServer):
    """Answers ``/v1/chat/completions`` from ``script`` in order (the last step repeats)."""

    def __init__(self, script: list[Any], model: str = "scripted") -> None:
        super().__init__()
        self.script = list(script)
        self.model = model
        self._step = 0

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self.requests if r.path == "/v1/chat/completions"]

    def _next(self) -> Any:
        step = self.script[min(self._step, len(self.script) - 1)]
        self._step += 1
        return step

    def build_app(self) -> ASGIApp:
        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                                             "owned_by": "scripted"}]})

        async def chat(request: Request) -> Response:
            body = await request.json()
            step = self._next()
            if body.get("stream"):
                return StreamingResponse(self._chunks(step, body), media_type="text/event-stream")
            return JSONResponse(self._completion(step))

        return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])

    def _completion(self, step: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(step, ToolCall):
            message["tool_calls"] = [{"id": step.id, "type": "function",
                                      "function": {"name": step.name, "arguments": json.dumps(step.arguments)}}]
            finish = "tool_calls"
        else:
            message["content"], finish = str(step), "stop"
        return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        event = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(event).encode() + b"\n\n"

    def _chunks(self, step: Any, body: dict[str, Any]) -> Iterator[bytes]:
        if step is CUT:
            yield self._chunk({"role": "assistant", "content": "Half an"})
            yield self._chunk({"content": " answer"})
            raise ConnectionResetError("scripted upstream cut the stream")
        if isinstance(step, ToolCall):
            arguments = json.dumps(step.arguments)
            yield self._chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": step.id, "type": "function", "function": {"name": step.name, "arguments": ""}}]})
            for start in range(0, len(arguments), 8):
                yield self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[start:start + 8]}}]})
            yield self._chunk({}, "tool_calls")
        else:
            text = str(step)
            yield self._chunk({"role": "assistant", "content": ""})
            for word in text.split(" "):
                yield self._chunk({"content": word if word == text.split(" ")[0] else " " + word})
            yield self._chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            event = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": self.model, "choices": [],
                     "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
            yield b"data: " + json.dumps(event).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
