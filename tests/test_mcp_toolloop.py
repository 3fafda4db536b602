"""The server-side tool loop over real parts: the third-party ``mcp-server-time`` (from PyPI, offline) and
a misbehaving MCP server built on the official SDK (tests/tool_servers/flaky.py) as tool sources, reached
by the gateway's MCP client; the model is the labelled scripted upstream (deterministic tool calls over
real HTTP)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.scripted_chat import ScriptedChat, call, say
from mindgate.config import McpServerConfig, ToolLoopSettings
from mindgate.mcp._client import ToolOutput, ToolServers
from mindgate.mcp._toolbox import OfferedTool, Toolbox, build_toolbox
from mindgate.mcp._toolloop import complete_with_tools, stream_with_tools
from mindgate.providers._base import ChatChunk
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient, parse_chat_chunk

FLAKY = str(Path(__file__).parent / "tool_servers" / "flaky.py")
TIME = McpServerConfig(command=sys.executable, args=["-m", "mcp_server_time", "--local-timezone", "UTC"])
ASK = [{"role": "user", "content": "What time is it in Paris?"}]


@pytest.fixture
def scripted() -> Iterator[ScriptedChat]:
    server = ScriptedChat()
    server.start()
    yield server
    server.stop()


def model_for(server: ScriptedChat) -> OpenAICompatChatModel:
    return OpenAICompatChatModel(OpenAICompatClient(f"{server.base_url}/v1", timeout=30), "scripted")


async def with_servers(configs: dict[str, McpServerConfig], body: Any) -> Any:
    servers = ToolServers(configs)
    try:
        return await body(servers)
    finally:
        await servers.aclose()


def test_the_loop_runs_a_third_party_server_and_feeds_the_result_back(scripted: ScriptedChat) -> None:
    scripted.script = [call(("get_current_time", {"timezone": "Europe/Paris"})), say("Paris: {tool}")]
    model = model_for(scripted)

    async def body(servers: ToolServers) -> Any:
        box = await build_toolbox(servers, ["time"])
        assert sorted(box.tools) == ["convert_time", "get_current_time"]
        return await complete_with_tools(lambda m, o: model.acomplete(m, **o), list(ASK), {"max_tokens": 50},
                                         box, ToolLoopSettings())

    response = asyncio.run(with_servers({"time": TIME}, body))
    first, second = scripted.chat_bodies()
    assert [t["function"]["name"] for t in first["tools"]] == ["get_current_time", "convert_time"]
    assert first["messages"] == ASK
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "get_current_time"
    fed_back = json.loads(second["messages"][2]["content"])
    assert second["messages"][2]["role"] == "tool" and fed_back["timezone"] == "Europe/Paris"
    assert response.content == f"Paris: {second['messages'][2]['content']}"
    [record] = response.raw["mindgate"]["tool_calls"]
    assert record["server"] == "time" and record["tool"] == "get_current_time" and not record["is_error"]
    assert json.loads(record["arguments"]) == {"timezone": "Europe/Paris"}
    assert response.raw["mindgate"]["steps"] == 2
    assert response.raw["usage"] == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}


def test_streamed_loop_relays_text_and_shows_each_call(scripted: ScriptedChat) -> None:
    scripted.script = [call(("get_current_time", {"timezone": "UTC"})), say("It is {tool}")]
    model = model_for(scripted)

    async def body(servers: ToolServers) -> list[ChatChunk]:
        box = await build_toolbox(servers, ["time"])
        chunks: AsyncIterator[ChatChunk] = stream_with_tools(
            lambda m, o: model.astream(m, **o), list(ASK), {}, box,
            ToolLoopSettings())
        return [c async for c in chunks]

    chunks = asyncio.run(with_servers({"time": TIME}, body))
    ids = {c.raw.get("id") for c in chunks}
    assert ids == {"chatcmpl-scripted-1"}  # one completion to the client
    assert not any(c.tool_calls for c in chunks)  # the gateway's own calls are not streamed as deltas
    traces = [c.raw["mindgate"]["tool_call"] for c in chunks if "tool_call" in c.raw.get("mindgate", {})]
    assert [t["tool"] for t in traces] == ["get_current_time"]
    text = "".join(c.content or "" for c in chunks)
    assert text.startswith("It is ") and '"timezone": "UTC"' in text
    finishes = [c for c in chunks if c.finish_reason]
    assert len(finishes) == 1 and finishes[0].finish_reason == "stop"
    assert finishes[0].raw["mindgate"]["steps"] == 2
    assert chunks[-1].raw["choices"] == [] and chunks[-1].raw["usage"]["total_tokens"] == 30


def test_a_hanging_crashing_or_flooding_server_ends_only_that_call(scripted: ScriptedChat) -> None:
    flaky = McpServerConfig(command=sys.executable, args=[FLAKY], timeout=1.5, max_output_chars=1000)
    scripted.script = [call(("echo", {"text": "a"})), call(("hang", {}), ("big", {}), ("fail", {})),
                       call(("crash", {})), call(("echo", {"text": "b"}), ("nope", {})), say("done")]
    model = model_for(scripted)

    async def body(servers: ToolServers) -> Any:
        box = await build_toolbox(servers, ["flaky"])
        return await complete_with_tools(lambda m, o: model.acomplete(m, **o), list(ASK), {}, box,
                                         ToolLoopSettings(max_steps=6))

    response = asyncio.run(with_servers({"flaky": flaky}, body))
    assert response.content == "done"
    records = {(r["tool"], r["arguments"]): r for r in response.raw["mindgate"]["tool_calls"]}
    echo_a, echo_b = records[("echo", '{"text": "a"}')], records[("echo", '{"text": "b"}')]
    assert not echo_a["is_error"] and not echo_b["is_error"]
    assert echo_a["output"] != echo_b["output"].replace(" b ", " a ")  # another pid: restarted after the crash
    hang = records[("hang", "{}")]
    assert hang["is_error"] and "did not answer within 1.5s" in hang["output"]
    big = records[("big", "{}")]
    assert not big["is_error"] and big["truncated"] and "[output truncated: 199000 more characters]" in big["output"]
    assert records[("fail", "{}")]["output"].endswith("the flaky tool failed on purpose")
    assert records[("crash", "{}")]["is_error"]
    assert "there is no tool named 'nope'" in records[("nope", "{}")]["output"]
    fed = scripted.chat_bodies()[-1]["messages"]
    assert any(m["role"] == "tool" and m["content"].startswith("Error: ") for m in fed)


def test_the_step_budget_bounds_the_loop(scripted: ScriptedChat) -> None:
    flaky = McpServerConfig(command=sys.executable, args=[FLAKY])
    scripted.script = [call(("echo", {"text": "again"}))]  # a model that never stops asking
    model = model_for(scripted)

    async def body(servers: ToolServers) -> Any:
        box = await build_toolbox(servers, ["flaky"])
        return await complete_with_tools(lambda m, o: model.acomplete(m, **o), list(ASK), {}, box,
                                         ToolLoopSettings(max_steps=2))

    response = asyncio.run(with_servers({"flaky": flaky}, body))
    bodies = scripted.chat_bodies()
    assert len(bodies) == 3 and "tools" in bodies[1] and "tools" not in bodies[2]
    assert response.raw["mindgate"]["stopped"] == "max_steps" and len(response.raw["mindgate"]["tool_calls"]) == 2
    assert response.tool_calls == [] and response.finish_reason == "stop"


def test_a_server_that_cannot_start_is_reported_and_left_out() -> None:
    broken = McpServerConfig(command=sys.executable, args=["-c", "import sys; sys.exit(2)"], connect_timeout=20)

    async def body(servers: ToolServers) -> Toolbox:
        return await build_toolbox(servers, ["broken", "time"])

    box = asyncio.run(with_servers({"broken": broken, "time": TIME}, body))
    assert sorted(box.tools) == ["convert_time", "get_current_time"]
    assert "MCP server 'broken' could not be started" in box.unavailable["broken"]


def test_text_in_a_streamed_finish_chunk_is_relayed() -> None:
    """Some servers put the last text (or a tool call) in the chunk that carries finish_reason."""
    def chunk(delta: dict[str, Any], finish: str | None) -> ChatChunk:
        raw = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return parse_chat_chunk(raw)

    async def stream(messages: list[Any], options: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        if messages[-1]["role"] == "tool":
            yield chunk({"content": "final words"}, "stop")
        else:
            yield chunk({"tool_calls": [{"index": 0, "id": "t1", "type": "function",
                                         "function": {"name": "get_current_time", "arguments": "{}"}}]}, "tool_calls")

    async def body() -> list[ChatChunk]:
        async def run(arguments: dict[str, Any]) -> ToolOutput:
            return ToolOutput("12:00", False)
        box = Toolbox({"get_current_time": OfferedTool("get_current_time", "time", "get_current_time", "", {}, run)})
        return [c async for c in stream_with_tools(stream, list(ASK), {}, box, ToolLoopSettings())]

    chunks = asyncio.run(body())
    assert "".join(c.content or "" for c in chunks) == "final words"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert not any(c.tool_calls for c in chunks)
