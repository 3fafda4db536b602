"""Overhead of the gateway's tool loop per step, excluding the model and the tool.

Each run is one request of three steps (two tool steps, then the answer), its toolbox built per request
as the gateway does. Every model call and every tool run is timed where the loop hands off to it; the
loop's own time is the total minus those, divided by the steps. Two settings, side by side:

* ``instant``: a model and a tool in this process that answer at once (the loop's bookkeeping alone);
* ``real``: the model over HTTP (a loopback server answering scripted OpenAI tool calls) and the tool on
  the third-party ``mcp-server-time`` over stdio, reached through the gateway's MCP client; the time spent
  in the HTTP client and the MCP client counts as model and tool time.

Both the non-streaming and the streaming loop are measured. Target: p50 overhead <= 2 ms per step.

Usage: python bench/tool_loop.py [--runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from _loopback import http_response, pct, start_upstream
from mindgate.config import McpServerConfig, ToolLoopSettings
from mindgate.mcp._client import ToolOutput, ToolServers
from mindgate.mcp._toolbox import OfferedTool, Toolbox, build_toolbox
from mindgate.mcp._toolloop import complete_with_tools, stream_with_tools
from mindgate.providers._base import ChatChunk, ChatResponse, Message, Usage
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient, parse_chat_chunk

TARGET_MS = 2.0
ASK: list[Message] = [{"role": "user", "content": "What time is it in Paris and in Tokyo?"}]
CALLS = [[("get_current_time", {"timezone": "Europe/Paris"})], [("get_current_time", {"timezone": "Asia/Tokyo"})]]


class Clock:
    """Time spent outside the loop (in the model and in tools), accumulated per run."""

    def __init__(self) -> None:
        self.outside = 0.0

    async def timed(self, awaitable: Awaitable[Any]) -> Any:
        start = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.outside += time.perf_counter() - start

    async def timed_stream(self, stream: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
        while True:
            start = time.perf_counter()
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                self.outside += time.perf_counter() - start
                return
            self.outside += time.perf_counter() - start
            yield chunk


def _completion(step: int, usage: bool = True) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if step < 2 else "Paris and Tokyo, as above."}
    if step < 2:
        message["tool_calls"] = [{"id": f"call_{step}_{i}", "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(args)}}
                                 for i, (name, args) in enumerate(CALLS[step])]
    return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if step < 2 else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15} if usage else None}


def _chunks(step: int) -> list[dict[str, Any]]:
    body = _completion(step)
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench"}
    message = body["choices"][0]["message"]
    out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    if message.get("content"):
        out += [{**base, "choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}]}
                for w in message["content"].split()]
    for i, c in enumerate(message.get("tool_calls", [])):
        out.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, **c}]},
                                         "finish_reason": None}]})
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": body["choices"][0]["finish_reason"]}]})
    out.append({**base, "choices": [], "usage": body["usage"]})
    return out


def _step_of(messages: Sequence[Message]) -> int:
    return sum(1 for m in messages if m.get("role") == "tool")


# -- instant parts --------------------------------------------------------------------------------------


def instant_toolbox() -> Toolbox:
    async def run(arguments: dict[str, Any]) -> ToolOutput:
        return ToolOutput(json.dumps({"timezone": arguments.get("timezone"), "datetime": "2026-01-01T12:00:00"}),
                          False)

    schema = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}
    tool = OfferedTool("get_current_time", "time", "get_current_time", "Current time in a timezone", schema, run)
    return Toolbox({tool.name: tool})


Complete = Callable[..., Awaitable[ChatResponse]]
Stream = Callable[..., AsyncIterator[ChatChunk]]


def instant_model(clock: Clock) -> tuple[Complete, Stream]:
    responses = [_completion(step) for step in range(3)]
    streams = [[parse_chat_chunk(c) for c in _chunks(step)] for step in range(3)]

    async def complete(messages: list[Message], options: dict[str, Any]) -> ChatResponse:
        async def answer() -> ChatResponse:
            raw = responses[_step_of(messages)]
            message = raw["choices"][0]["message"]
            return ChatResponse(message["content"], "bench", raw["choices"][0]["finish_reason"],
                                list(message.get("tool_calls", [])), Usage(10, 5), raw)
        return await clock.timed(answer())

    def stream(messages: list[Message], options: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        async def chunks() -> AsyncIterator[ChatChunk]:
            for chunk in streams[_step_of(messages)]:
                yield chunk
        return clock.timed_stream(chunks())

    return complete, stream


def timed_toolbox(box: Toolbox, clock: Clock) -> Toolbox:
    """``box`` with each tool's run timed as outside-the-loop time."""
    def wrap(tool: OfferedTool) -> OfferedTool:
        async def run(arguments: dict[str, Any]) -> ToolOutput:
            result: ToolOutput = await clock.timed(tool.run(arguments))
            return result
        return OfferedTool(tool.name, tool.source, tool.tool, tool.description, tool.parameters, run)
    return Toolbox({name: wrap(t) for name, t in box.tools.items()}, dict(box.unavailable))


# -- the loopback HTTP upstream ---------------------------------------------------------------------------


def reply(head: bytes, body: bytes) -> bytes:
    """The scripted step for a request (by the tool messages it carries), streamed or not."""
    request = json.loads(body)
    step = _step_of(request["messages"])
    if request.get("stream"):
        events = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in _chunks(step))
        return http_response(events + b"data: [DONE]\n\n", b"text/event-stream")
    return http_response(json.dumps(_completion(step)).encode())


# -- measuring ------------------------------------------------------------------------------------------


async def measure(runs: int, make_box: Callable[[], Awaitable[Toolbox]], complete: Complete, stream: Stream,
                  clock: Clock) -> dict[str, dict[str, float]]:
    settings = ToolLoopSettings()
    out: dict[str, dict[str, float]] = {}
    for mode in ("complete", "stream"):
        per_step: list[float] = []
        outside: list[float] = []
        for i in range(runs + 20):
            clock.outside = 0.0
            start = time.perf_counter()
            box = await make_box()  # per request, as the gateway does
            if mode == "complete":
                response = await complete_with_tools(complete, list(ASK), {}, box, settings)
                steps = int(response.raw["mindgate"]["steps"])
            else:
                last: ChatChunk | None = None
                async for chunk in stream_with_tools(stream, list(ASK), {}, box, settings):
                    last = chunk if "mindgate" in chunk.raw else last
                assert last is not None
                steps = int(last.raw["mindgate"]["steps"])
            total = time.perf_counter() - start
            if i >= 20:  # warm-up runs are not counted
                per_step.append((total - clock.outside) / steps * 1000)
                outside.append(clock.outside / steps * 1000)
        out[mode] = {"overhead_p50_ms": pct(per_step, 0.5), "overhead_p95_ms": pct(per_step, 0.95),
                     "model_and_tool_p50_ms": pct(outside, 0.5), "runs": runs, "steps_per_run": 3}
    return out


async def run(runs: int) -> dict[str, dict[str, dict[str, float]]]:
    clock = Clock()
    complete, stream = instant_model(clock)
    async def instant_box() -> Toolbox:
        return timed_toolbox(instant_toolbox(), clock)

    results = {"instant": await measure(runs, instant_box, complete, stream, clock)}
    port = start_upstream(reply)
    model = OpenAICompatChatModel(OpenAICompatClient(f"http://127.0.0.1:{port}/v1", timeout=30), "bench")
    servers = ToolServers({"time": McpServerConfig(command=sys.executable,
                                                   args=["-m", "mcp_server_time", "--local-timezone", "UTC"])})
    try:
        async def real_box() -> Toolbox:
            return timed_toolbox(await build_toolbox(servers, ["time"]), clock)

        async def http_complete(messages: list[Message], options: dict[str, Any]) -> ChatResponse:
            response: ChatResponse = await clock.timed(model.acomplete(messages, **options))
            return response

        def http_stream(messages: list[Message], options: dict[str, Any]) -> AsyncIterator[ChatChunk]:
            return clock.timed_stream(model.astream(messages, **options))

        await real_box()  # starts the server once, as the gateway's warm-up does
        results["real"] = await measure(runs, real_box, http_complete, http_stream, clock)
    finally:
        await servers.aclose()
        await model.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="measured requests per setting and mode")
    args = parser.parse_args()
    results = asyncio.run(run(args.runs))
    print(f"{'setting':<9} {'mode':<9} {'loop p50 ms/step':>17} {'loop p95 ms/step':>17} "
          f"{'model+tool p50 ms/step':>23}")
    for setting, modes in results.items():
        for mode, row in modes.items():
            print(f"{setting:<9} {mode:<9} {row['overhead_p50_ms']:>17.3f} {row['overhead_p95_ms']:>17.3f} "
                  f"{row['model_and_tool_p50_ms']:>23.3f}")
    worst = max(row["overhead_p50_ms"] for modes in results.values() for row in modes.values())
    print(f"target: p50 <= {TARGET_MS} ms per step -> {'met' if worst <= TARGET_MS else 'NOT met'} "
          f"(worst p50 {worst:.3f} ms)")
    print(json.dumps({"target_ms": TARGET_MS, "results": results}))


if __name__ == "__main__":
    main()
