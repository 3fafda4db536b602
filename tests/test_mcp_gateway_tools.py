"""MCP tools through the gateway: the official ``openai`` SDK against the gateway under uvicorn, tools from
the third-party ``mcp-server-time`` (PyPI, offline) and the misbehaving test server, the model the
labelled scripted upstream (deterministic tool calls over real HTTP) and, once, the real llama.cpp
server."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes.scripted_chat import ScriptedChat, call, say
from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MemorySettings, MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient

Serve = Callable[[Any], GatewayServer]
FLAKY = str(Path(__file__).parent / "tool_servers" / "flaky.py")
SERVERS = {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
           "flaky": {"command": sys.executable, "args": [FLAKY], "timeout": 2}}
FULL, LIMITED, BUDGET = "sk-full-tools-0001", "sk-limited-tools-0002", "sk-budget-tools-0003"
ASK = [{"role": "user", "content": "What time is it in Paris?"}]
TIME = {"mindgate": {"mcp_servers": ["time"]}}


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedChat]:
    server = ScriptedChat()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_script(scripted: ScriptedChat) -> None:
    scripted.requests.clear()
    scripted.served = 0


def _config(**extra: Any) -> MindgateConfig:
    return MindgateConfig.from_dict({
        "mcp_servers": SERVERS,
        "routing": {"chains": {"agent": {"targets": ["local"], "mcp_servers": ["time"]}}},
        "gateway": {"api_keys": [
            {"name": "full", "key": FULL},
            {"name": "limited", "key": LIMITED, "users": ["alice"], "mcp_servers": ["time"],
             "mcp_tools": ["time.get_current_time"]},
            {"name": "budget", "key": BUDGET, "tokens_per_minute": 20}]},
        **extra})


@pytest.fixture(scope="module")
def tool_gateway(scripted: ScriptedChat, minilm: Embedder,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """One gateway (and one set of tool server processes) for the module's tests."""
    chat = OpenAICompatChatModel(OpenAICompatClient(f"{scripted.base_url}/v1", timeout=30), "scripted")
    store = SQLiteStore(tmp_path_factory.mktemp("tools") / "memory.db")
    memory = AsyncMemory(embedder=minilm, store=store, settings=MemorySettings())
    server = GatewayServer(create_app(_config(), chat=chat, memory=memory, warm_up=False)).start()
    yield server
    server.stop()
    store.close()


def test_chat_runs_mcp_tools_server_side_and_shows_the_calls(tool_gateway: GatewayServer,
                                                              scripted: ScriptedChat) -> None:
    scripted.script = [call(("get_current_time", {"timezone": "Europe/Paris"})), say("In Paris it is {tool}")]
    completion = tool_gateway.openai(api_key=FULL).chat.completions.create(
        model="scripted", messages=ASK, max_tokens=50, extra_body=TIME)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop" and not message.tool_calls
    assert message.content and message.content.startswith("In Paris it is {") and "Europe/Paris" in message.content
    trace = completion.model_extra["mindgate"]  # type: ignore[index]
    [record] = trace["tool_calls"]
    assert (record["server"], record["tool"], record["is_error"]) == ("time", "get_current_time", False)
    assert json.loads(record["output"])["timezone"] == "Europe/Paris" and trace["steps"] == 2
    assert completion.usage is not None and completion.usage.total_tokens == 30  # both model calls
    first, second = scripted.chat_bodies()
    assert "mindgate" not in first  # the gateway's own options never reach the upstream
    assert [t["function"]["name"] for t in first["tools"]] == ["get_current_time", "convert_time"]
    assert second["messages"][-1]["role"] == "tool"


def test_streamed_chat_with_tools(tool_gateway: GatewayServer, scripted: ScriptedChat) -> None:
    scripted.script = [call(("get_current_time", {"timezone": "UTC"})), say("It is {tool}")]
    stream = tool_gateway.openai(api_key=FULL).chat.completions.create(
        model="scripted", messages=ASK, stream=True, extra_headers={"X-Mindgate-Mcp": "time"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("It is {") and '"timezone": "UTC"' in text
    calls = [c.model_extra["mindgate"]["tool_call"] for c in chunks  # type: ignore[index]
             if c.model_extra and "tool_call" in c.model_extra.get("mindgate", {})]
    assert [c["tool"] for c in calls] == ["get_current_time"]
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_a_routes_servers_apply_without_opt_in(tool_gateway: GatewayServer, scripted: ScriptedChat) -> None:
    scripted.script = [say("no tools needed")]
    tool_gateway.openai(api_key=FULL).chat.completions.create(model="agent", messages=ASK)
    tool_gateway.openai(api_key=FULL).chat.completions.create(model="scripted", messages=ASK)
    routed, plain = scripted.chat_bodies()
    assert {t["function"]["name"] for t in routed["tools"]} == {"get_current_time", "convert_time"}
    assert "tools" not in plain


def test_only_configured_servers_run_and_keys_are_limited(tool_gateway: GatewayServer,
                                                          scripted: ScriptedChat) -> None:
    client = tool_gateway.openai(api_key=FULL)
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="scripted", messages=ASK, extra_body={"mindgate": {"mcp_servers": ["x"]}})
    assert "unknown MCP server(s): x; only servers configured under mcp_servers can run" in str(unknown.value)
    with pytest.raises(openai.BadRequestError):  # a server definition in the body is not a name
        client.chat.completions.create(model="scripted", messages=ASK, extra_body={"mindgate": {"mcp_servers": [
            {"command": "rm", "args": ["-rf", "/"]}]}})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="scripted", messages=ASK, extra_headers={"X-Mindgate-Mcp": "evil"})
    limited = tool_gateway.openai(api_key=LIMITED)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        limited.chat.completions.create(model="scripted", messages=ASK, extra_body={"mindgate": {
            "mcp_servers": ["flaky"]}})
    assert "may not use MCP server(s) flaky" in str(refused.value)
    assert scripted.chat_bodies() == []  # nothing reached the model
    scripted.script = [call(("convert_time", {"source_timezone": "UTC", "time": "12:00",
                                              "target_timezone": "Asia/Tokyo"})), say("done")]
    answer = limited.chat.completions.create(model="scripted", messages=ASK, extra_body=TIME)
    offered = [t["function"]["name"] for t in scripted.chat_bodies()[0]["tools"]]
    assert offered == ["get_current_time"]  # the key's mcp_tools
    [record] = answer.model_extra["mindgate"]["tool_calls"]  # type: ignore[index]
    assert record["is_error"] and "there is no tool named 'convert_time'" in record["output"]


def test_a_failing_tool_server_ends_only_its_call(tool_gateway: GatewayServer, scripted: ScriptedChat) -> None:
    scripted.script = [call(("hang", {"seconds": 60}), ("echo", {"text": "hi"})), say("still here")]
    answer = tool_gateway.openai(api_key=FULL).chat.completions.create(
        model="scripted", messages=ASK, extra_body={"mindgate": {"mcp_servers": ["flaky"]}})
    assert answer.choices[0].message.content == "still here"
    hang, echo = answer.model_extra["mindgate"]["tool_calls"]  # type: ignore[index]
    assert hang["is_error"] and "did not answer within 2s" in hang["output"]
    assert not echo["is_error"] and echo["output"].startswith("echo hi")


def test_memory_mode_tool_offers_search_memory_instead_of_injecting(tool_gateway: GatewayServer,
                                                                   scripted: ScriptedChat) -> None:
    with tool_gateway.http(LIMITED) as http:
        assert http.post("/v1/memories", json={"messages": "Alice drinks green tea", "infer": False}).status_code == 200
    scripted.script = [call(("search_memory", {"query": "favourite drink"})), say("From memory: {tool}")]
    answer = tool_gateway.openai(api_key=LIMITED).chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "What do I like to drink?"}],
        extra_body={"mindgate": {"memory_mode": "tool"}})
    first = scripted.chat_bodies()[0]
    assert first["messages"] == [{"role": "user", "content": "What do I like to drink?"}]  # nothing injected
    assert [t["function"]["name"] for t in first["tools"]] == ["search_memory"]
    assert "Alice drinks green tea" in (answer.choices[0].message.content or "")
    [record] = answer.model_extra["mindgate"]["tool_calls"]  # type: ignore[index]
    assert record["server"] == "memory" and "user_id" not in record["output"]


def test_client_tools_still_go_back_to_the_client(tool_gateway: GatewayServer, scripted: ScriptedChat) -> None:
    order_tool = {"type": "function", "function": {"name": "lookup_order", "description": "Find an order",
                                                   "parameters": {"type": "object", "properties": {
                                                       "id": {"type": "string"}}}}}
    scripted.script = [call(("get_current_time", {"timezone": "UTC"}), ("lookup_order", {"id": "42"}))]
    answer = tool_gateway.openai(api_key=FULL).chat.completions.create(
        model="scripted", messages=ASK, tools=[order_tool], extra_body=TIME)  # type: ignore[list-item]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls or []] == ["lookup_order"]
    assert [r["tool"] for r in answer.model_extra["mindgate"]["tool_calls"]] == ["get_current_time"]  # type: ignore


def test_the_tool_loop_on_the_real_llama_cpp_server(serve_gateway: Serve, llama_proxy: RecordingProxy,
                                                    memory_factory: Callable[..., AsyncMemory]) -> None:
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    gateway = serve_gateway(create_app(_config(), chat=chat, memory=memory_factory(), warm_up=False))
    completion = gateway.openai(api_key=FULL).chat.completions.create(
        model="smollm2", messages=ASK, max_tokens=48, temperature=0, extra_body=TIME)
    assert completion.object == "chat.completion" and completion.choices[0].finish_reason in ("stop", "length")
    trace = completion.model_extra["mindgate"]  # type: ignore[index]
    assert 1 <= trace["steps"] <= 7 and isinstance(trace["tool_calls"], list)
    for record in trace["tool_calls"]:
        assert record["server"] in ("time", "-") and isinstance(record["output"], str)
    sent = llama_proxy.chat_requests()
    assert len(sent) == trace["steps"]
    assert {t["function"]["name"] for t in sent[0]["tools"]} == {"get_current_time", "convert_time"}
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_each_model_call_of_the_loop_is_charged_once_to_the_key(tool_gateway: GatewayServer,
                                                                scripted: ScriptedChat) -> None:
    metrics = tool_gateway.app.state.gateway.metrics
    before = sum(metrics.tokens.values())
    scripted.script = [call(("get_current_time", {"timezone": "UTC"})), say("done")]
    tool_gateway.openai(api_key=FULL).chat.completions.create(model="scripted", messages=ASK, extra_body=TIME)
    assert sum(metrics.tokens.values()) - before == 30  # two calls of 15 tokens, each counted once
    scripted.requests.clear()
    scripted.served = 0
    scripted.script = [call(("echo", {"text": "1"})), call(("echo", {"text": "2"})), say("never")]
    with pytest.raises(openai.RateLimitError):  # 20 tokens a minute: the third call finds the bucket in debt
        tool_gateway.openai(api_key=BUDGET).chat.completions.create(
            model="scripted", messages=ASK, extra_body={"mindgate": {"mcp_servers": ["flaky"]}})
    assert len(scripted.chat_bodies()) == 2


def test_a_streamable_http_tool_server_another_gateways_memory(tool_gateway: GatewayServer, scripted: ScriptedChat,
                                                               serve_gateway: Serve,
                                                               memory_factory: Callable[..., AsyncMemory]) -> None:
    with tool_gateway.http(LIMITED) as http:  # alice's memory on the first gateway
        assert http.post("/v1/memories", json={"messages": "Alice drinks green tea", "infer": False}).status_code == 200
    remote = {"url": f"{tool_gateway.base_url}/mcp", "headers": {"Authorization": f"Bearer {LIMITED}"},
              "tools": ["search_memory"]}
    chat = OpenAICompatChatModel(OpenAICompatClient(f"{scripted.base_url}/v1", timeout=30), "scripted")
    second = serve_gateway(create_app(MindgateConfig.from_dict({"mcp_servers": {"alice": remote}}), chat=chat,
                                      memory=memory_factory(), warm_up=False))
    scripted.script = [call(("search_memory", {"query": "drink"})), say("{tool}")]
    answer = second.openai().chat.completions.create(model="scripted", messages=ASK,
                                                     extra_headers={"X-Mindgate-Mcp": "alice"})
    assert [t["function"]["name"] for t in scripted.chat_bodies()[0]["tools"]] == ["search_memory"]
    found = json.loads(answer.choices[0].message.content or "{}")
    assert found["results"][0]["memory"] == "Alice drinks green tea"


def test_responses_api_shows_the_gateways_calls_as_mcp_call_items(tool_gateway: GatewayServer,
                                                                  scripted: ScriptedChat) -> None:
    client = tool_gateway.openai(api_key=FULL)
    scripted.script = [call(("get_current_time", {"timezone": "Asia/Tokyo"})), say("Tokyo: {tool}")]
    response = client.responses.create(model="scripted", input="Time in Tokyo?", extra_body=TIME)
    mcp, message = response.output
    assert mcp.type == "mcp_call" and mcp.server_label == "time" and mcp.name == "get_current_time"
    assert json.loads(mcp.arguments) == {"timezone": "Asia/Tokyo"} and mcp.status == "completed"
    assert json.loads(mcp.output or "{}")["timezone"] == "Asia/Tokyo"
    assert message.type == "message" and response.output_text.startswith("Tokyo: {")
    assert response.usage is not None and response.usage.total_tokens == 30
    scripted.requests.clear()
    scripted.served = 0
    scripted.script = [call(("fail", {})), say("it failed")]
    with client.responses.stream(model="scripted", input="Try it", extra_headers={"X-Mindgate-Mcp": "flaky"}) as s:
        kinds = [event.type for event in s]
        final = s.get_final_response()
    assert "response.mcp_call.failed" in kinds and kinds[-1] == "response.completed"
    failed = next(item for item in final.output if item.type == "mcp_call")
    assert failed.status == "failed" and failed.error is not None and final.output_text == "it failed"
