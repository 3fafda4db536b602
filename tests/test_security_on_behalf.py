"""A key's model binding and token limit cover the model calls made on its behalf: memory extraction for
``POST /v1/memories`` with ``infer: true`` (and the MCP ``add_memory`` tool with ``infer``) and the
background memory write after a chat. Real llama.cpp
server behind a recording proxy, real MiniLM and SQLite, real gateway over HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory

Serve = Callable[..., GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
CHEAP, METERED = "sk-cheap-01", "sk-metered-02"
FACT = "My name is Ana, I live in Lisbon and I play the cello every evening."


@pytest.fixture
def bound(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> GatewayServer:
    config = MindgateConfig.from_dict({"gateway": {"api_keys": [
        {"name": "cheap", "key": CHEAP, "models": ["smollm2"]},  # not "auto", the model memory extraction uses
        {"name": "metered", "key": METERED, "tokens_per_minute": 150},
    ]}})
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    return serve_gateway(create_app(config, chat=chat, memory=memory_factory(chat), warm_up=False))


def _writes_done(server: GatewayServer, expected: int, timeout: float = 120.0) -> str:
    """The /metrics text once ``expected`` background writes have finished (ok or failed)."""
    deadline = time.monotonic() + timeout
    with server.http(CHEAP) as http:
        while True:
            text = http.get("/metrics").text
            done = sum(float(n) for n in re.findall(
                r'^mindgate_memory_writes_total\{outcome="(?:ok|failed)"\} ([0-9.e+]+)$', text, re.M))
            if done >= expected or time.monotonic() > deadline:
                return text
            time.sleep(0.2)


def test_a_key_not_bound_to_the_memory_model_cannot_drive_it(bound: GatewayServer,
                                                              llama_proxy: RecordingProxy) -> None:
    with bound.http(CHEAP) as http:
        refused = http.post("/v1/memories", json={"messages": FACT, "user_id": "ana", "infer": True})
        assert refused.status_code == 403, refused.text
        assert "may not use model 'auto'" in refused.json()["error"]["message"]
        assert llama_proxy.chat_requests() == []
        chat = http.post("/v1/chat/completions", json={"model": "smollm2", "user": "ana", "max_tokens": 4,
                                                       "messages": [{"role": "user", "content": FACT}]})
        assert chat.status_code == 200, chat.text
        assert chat.headers["x-mindgate-memory-write"].startswith("skipped: key may not use model auto")
        time.sleep(0.5)  # a background write, had one been queued, would have started by now
        assert len(llama_proxy.chat_requests()) == 1  # the chat only: no extraction call on its behalf
        assert http.get("/v1/memories", params={"user_id": "ana"}).json()["results"] == []
        stored = http.post("/v1/memories", json={"messages": FACT, "user_id": "ana", "infer": False})
        assert stored.status_code == 200  # storing as given calls no model


def test_extraction_is_charged_to_the_key(bound: GatewayServer, llama_proxy: RecordingProxy) -> None:
    with bound.http(METERED) as http:
        added = http.post("/v1/memories", json={"messages": FACT, "user_id": "ana", "infer": True})
        assert added.status_code == 200, added.text
        assert len(llama_proxy.chat_requests()) >= 1
        # the extraction prompt alone is far over 150 tokens: the key is in debt now
        refused = http.post("/v1/chat/completions", json={"model": "auto", "max_tokens": 2,
                                                          "messages": [{"role": "user", "content": "Hi"}]})
        assert refused.status_code == 429, refused.text
        assert "150 tokens per minute" in refused.json()["error"]["message"]


def test_the_background_write_after_a_chat_is_charged_to_the_key(bound: GatewayServer,
                                                                  llama_proxy: RecordingProxy) -> None:
    with bound.http(METERED) as http:
        chat = http.post("/v1/chat/completions", json={"model": "auto", "user": "ana", "max_tokens": 2,
                                                       "messages": [{"role": "user", "content": FACT}]})
        assert chat.status_code == 200, chat.text  # the chat alone stays under 150 tokens
        metrics = _writes_done(bound, 1)
        assert re.search(r'^mindgate_memory_writes_total\{outcome="ok"\} 1', metrics, re.M), metrics
        refused = http.post("/v1/chat/completions", json={"model": "auto", "max_tokens": 2,
                                                          "messages": [{"role": "user", "content": "Hi"}]})
        assert refused.status_code == 429, refused.text


def test_mcp_add_memory_with_infer_follows_the_keys_binding(bound: GatewayServer,
                                                             llama_proxy: RecordingProxy) -> None:
    async def run() -> str:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {CHEAP}", "X-Mindgate-User": "ana"},
                                      timeout=120) as http, \
                Client(streamable_http_client(f"{bound.base_url}/mcp", http_client=http)) as client:
            result = await client.call_tool("add_memory", {"text": FACT, "infer": True})
            assert result.is_error, result.content
            return str(result.content[0].text)  # type: ignore[union-attr]

    assert "may not use model 'auto'" in asyncio.run(run())
    assert llama_proxy.chat_requests() == []
