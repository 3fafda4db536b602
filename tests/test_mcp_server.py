"""Memory as an MCP server, driven by the official ``mcp`` client SDK as a real client: over stdio
(``mindgate mcp`` as a child process) and over streamable HTTP (``/mcp`` on the gateway under uvicorn,
with API keys). The memory underneath is the real MiniLM embedder and SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

import mindgate
from fixtures_gateway import GatewayServer
from mindgate.cli import main
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory

TOOLS = {"add_memory", "search_memory", "list_memories", "get_memory", "update_memory", "delete_memory",
         "memory_history"}
ALICE, BOB, ADMIN = "sk-alice-mcp-0001", "sk-bob-mcp-0002", "sk-admin-mcp-0003"


def payload(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result.content
    return str(result.content[0].text)  # type: ignore[union-attr]


async def check_tool_listing(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    search = tools["search_memory"]
    assert search.input_schema["required"] == ["query"] and search.input_schema["additionalProperties"] is False
    assert search.input_schema["properties"]["limit"] == {"type": "integer", "minimum": 1, "maximum": 50,
                                                          "default": 5,
                                                          "description": "How many memories to return at most."}
    for name, tool in tools.items():
        assert "user_id" not in json.dumps(tool.input_schema), name  # the scope is never an argument
        assert tool.description and len(tool.description) > 20
    assert tools["search_memory"].annotations.read_only_hint is True
    assert tools["delete_memory"].annotations.destructive_hint is True
    assert tools["add_memory"].annotations.read_only_hint is False
    assert tools["add_memory"].annotations.destructive_hint is False


async def add_search_update_history(client: Client) -> str:
    added = payload(await client.call_tool("add_memory", {"text": "Prefers green tea over coffee",
                                                          "metadata": {"category": "food"}}))
    [item] = added["results"]
    assert item["event"] == "ADD" and item["memory"] == "Prefers green tea over coffee"
    again = payload(await client.call_tool("add_memory", {"text": "Prefers green tea over coffee"}))
    assert again["results"][0]["event"] == "NONE"  # already known
    found = payload(await client.call_tool("search_memory", {"query": "what does the user like to drink"}))
    assert found["results"][0]["id"] == item["id"] and 0 < found["results"][0]["score"] <= 1
    assert "user_id" not in found["results"][0] and "hash" not in found["results"][0]
    filtered = payload(await client.call_tool("search_memory", {"query": "tea", "filters": {"category": "travel"}}))
    assert filtered["results"] == []
    updated = payload(await client.call_tool("update_memory", {"memory_id": item["id"],
                                                               "text": "Prefers black tea now"}))
    assert updated["memory"] == "Prefers black tea now"
    history = payload(await client.call_tool("memory_history", {"memory_id": item["id"]}))["history"]
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    assert history[1]["old_memory"] == "Prefers green tea over coffee"
    assert history[1]["new_memory"] == "Prefers black tea now"
    listed = payload(await client.call_tool("list_memories", {"limit": 10}))
    assert [m["memory"] for m in listed["results"]] == ["Prefers black tea now"]
    return str(item["id"])


async def bad_arguments_are_tool_errors(client: Client) -> None:
    cases = [
        ("search_memory", {}, "search_memory: 'query' is required"),
        ("search_memory", {"query": "tea", "limit": 500}, "argument `limit`: 500 is greater than the maximum of 50"),
        ("search_memory", {"query": "tea", "user": "bob"}, "valid arguments: filters, limit, query"),
        ("add_memory", {}, "give exactly one of `text` (one fact) or `messages`"),
        ("add_memory", {"text": "x", "messages": [{"role": "user", "content": "y"}]}, "give exactly one of"),
        ("get_memory", {"memory_id": "no-such-id"}, "not found"),
        ("update_memory", {"memory_id": "no-such-id", "text": "x"}, "not found"),
        ("search_memory", {"query": "tea", "filters": {"user_id": "bob"}}, "may not name user_id"),
        ("search_memory", {"query": "tea", "filters": {"AND": [{"agent_id": "x"}]}}, "may not name agent_id"),
        ("list_memories", {"filters": {"rating": {"between": 3}}}, "between"),
    ]
    for tool, arguments, expected in cases:
        text = error_text(await client.call_tool(tool, arguments))
        assert expected in text, (tool, arguments, text)
    with pytest.raises(MCPError, match="unknown tool 'drop_tables'"):
        await client.call_tool("drop_tables", {})


# -- stdio ------------------------------------------------------------------------------------------------


def _stdio(tmp_path: Path, *args: str) -> StdioServerParameters:
    src = str(Path(mindgate.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "MINDGATE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return StdioServerParameters(command=sys.executable, args=["-m", "mindgate.cli", "mcp", *args], env=env)


def test_stdio_server_serves_memory_tools_to_the_official_client(tmp_path: Path) -> None:
    async def run() -> None:
        async with Client(_stdio(tmp_path, "--user", "alice"), read_timeout_seconds=120) as client:
            assert client.server_info is not None and client.server_info.name == "mindgate-memory"
            await check_tool_listing(client)
            memory_id = await add_search_update_history(client)
            await bad_arguments_are_tool_errors(client)
            deleted = payload(await client.call_tool("delete_memory", {"memory_id": memory_id}))
            assert deleted["id"] == memory_id
            assert "not found" in error_text(await client.call_tool("get_memory", {"memory_id": memory_id}))
            history = payload(await client.call_tool("memory_history", {"memory_id": memory_id}))["history"]
            assert [h["event"] for h in history] == ["ADD", "UPDATE", "DELETE"]
        async with Client(_stdio(tmp_path, "--user", "bob", "--read-only"), read_timeout_seconds=120) as client:
            names = {t.name for t in (await client.list_tools()).tools}  # listing loads no model: cheap
            assert names == {"search_memory", "list_memories", "get_memory", "memory_history"}

    asyncio.run(run())


def test_mcp_command_without_a_scope_says_what_to_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp"]) == 1
    err = capsys.readouterr().err
    assert "mindgate mcp needs to know whose memories to serve" in err and "--user" in err


# -- streamable HTTP on the gateway -------------------------------------------------------------------------


@pytest.fixture
def mcp_gateway(serve_gateway: Callable[[Any], GatewayServer],
                memory_factory: Callable[..., AsyncMemory]) -> GatewayServer:
    config = MindgateConfig.from_dict({"gateway": {"api_keys": [
        {"name": "alice", "key": ALICE, "users": ["alice"]},
        {"name": "bob", "key": BOB, "users": ["bob"]},
        {"name": "admin", "key": ADMIN},
    ]}})
    return serve_gateway(create_app(config, memory=memory_factory(), warm_up=False))


@asynccontextmanager
async def http_client(gateway: GatewayServer, key: str | None, **headers: str) -> AsyncIterator[Client]:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http, \
            Client(streamable_http_client(f"{gateway.base_url}/mcp", http_client=http)) as client:
        yield client


def test_gateway_mcp_endpoint_serves_the_keys_user(mcp_gateway: GatewayServer) -> None:
    async def run() -> None:
        async with http_client(mcp_gateway, ALICE) as client:
            await check_tool_listing(client)
            await add_search_update_history(client)
            await bad_arguments_are_tool_errors(client)
        async with http_client(mcp_gateway, ADMIN, **{"X-Mindgate-User": "carol"}) as client:
            assert payload(await client.call_tool("list_memories", {}))["results"] == []

    asyncio.run(run())
    with mcp_gateway.http(ALICE) as http:  # the same memories through the REST API: the scope was alice
        assert [m["memory"] for m in http.get("/v1/memories").json()["results"]] == ["Prefers black tea now"]


def test_a_key_bound_to_one_user_cannot_reach_another_users_memories_through_any_tool(
        mcp_gateway: GatewayServer) -> None:
    with mcp_gateway.http(BOB) as http:
        bobs = http.post("/v1/memories", json={"messages": "Bob's locker code is 4711", "infer": False}).json()
    bob_id = bobs["results"][0]["id"]

    async def run() -> None:
        async with http_client(mcp_gateway, ALICE) as client:
            for tool, arguments in (("get_memory", {"memory_id": bob_id}),
                                    ("update_memory", {"memory_id": bob_id, "text": "hacked"}),
                                    ("delete_memory", {"memory_id": bob_id}),
                                    ("memory_history", {"memory_id": bob_id})):
                assert "not found" in error_text(await client.call_tool(tool, arguments)), tool
            assert payload(await client.call_tool("search_memory", {"query": "locker code"}))["results"] == []
            assert payload(await client.call_tool("list_memories", {}))["results"] == []
            assert "may not name user_id" in error_text(await client.call_tool(
                "list_memories", {"filters": {"user_id": "bob"}}))

    asyncio.run(run())
    with mcp_gateway.http(BOB) as http:  # untouched
        assert http.get(f"/v1/memories/{bob_id}").json()["memory"] == "Bob's locker code is 4711"


def test_gateway_mcp_refuses_before_the_mcp_layer(mcp_gateway: GatewayServer) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    with mcp_gateway.http() as http:
        missing = http.post("/mcp", json=init, headers=accept)
        assert missing.status_code == 401 and "requires an API key" in missing.json()["error"]["message"]
    with mcp_gateway.http(ALICE) as http:
        other = http.post("/mcp", json=init, headers={**accept, "X-Mindgate-User": "bob"})
        assert other.status_code == 403 and other.json()["error"]["type"] == "permission_error"
        web = http.post("/mcp", json=init, headers={**accept, "Origin": "http://evil.example"})
        assert web.status_code == 403 and "web origin" in web.json()["error"]["message"]
        local = http.post("/mcp", json=init, headers={**accept, "Origin": "http://localhost:3000"})
        assert local.status_code == 200 and local.json()["result"]["serverInfo"]["name"] == "mindgate-memory"
    with mcp_gateway.http(ADMIN) as http:
        nobody = http.post("/mcp", json=init, headers=accept)
        assert nobody.status_code == 400 and "X-Mindgate-User" in nobody.json()["error"]["message"]
