"""Which chat model serves a request, with the gateway built from a config (no injected chat model): named
chains, semantic routes (real MiniLM) and catalog models, all on the real llama.cpp server behind a
recording proxy. Two endpoints on the same server are told apart by a ``seed`` each adds to its requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fixtures_gateway import GatewayServer, RecordingProxy
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers._base import Embedder

CODE = ["write a python function", "fix this stack trace", "refactor this class", "a bash script that"]


@pytest.fixture
def routed(serve_gateway: Callable[[Any], GatewayServer], llama_proxy: RecordingProxy,
           memory_factory: Callable[..., AsyncMemory], minilm: Embedder) -> GatewayServer:
    base = f"{llama_proxy.base_url}/v1"
    config = MindgateConfig.from_dict({
        "providers": {
            "chatbox": {"provider": "openai_compatible",
                        "config": {"base_url": base, "model": "smollm2", "model_kwargs": {"seed": 22}}},
            "coderbox": {"provider": "openai_compatible",
                         "config": {"base_url": base, "model": "smollm2", "model_kwargs": {"seed": 11}}},
        },
        "routing": {"default": "main",
                    "chains": {"main": {"targets": ["chatbox"]}, "coder": {"targets": ["coderbox"]}},
                    "routes": [{"name": "code", "target": "coder", "utterances": CODE, "threshold": 0.4}]},
        "gateway": {"memory": False},
    })
    return serve_gateway(create_app(config, memory=memory_factory(), embedder=minilm))


def _seeds(proxy: RecordingProxy) -> list[int]:
    return [r["seed"] for r in proxy.chat_requests()]


def test_chains_by_name_and_semantic_routes(routed: GatewayServer, llama_proxy: RecordingProxy) -> None:
    client = routed.openai()

    def ask(model: str, text: str) -> str:
        reply = client.chat.completions.create(model=model, max_tokens=4,
                                               messages=[{"role": "user", "content": text}])
        return str(reply.choices[0].message.content)

    ask("coder", "Hello there, how are you?")  # a chain by name: no semantic routing
    ask("main", "Write a Python function that sorts a list")
    ask("gpt-4o-mini", "Write a python function to reverse a string")  # unknown name: semantic routes decide
    ask("gpt-4o-mini", "What a lovely sunny morning it is")
    assert _seeds(llama_proxy) == [11, 22, 11, 22]
    listed = {m.id: m for m in client.models.list()}
    assert {"main", "coder"} <= set(listed)


def test_a_catalog_model_is_served_by_its_endpoint(routed: GatewayServer, llama_proxy: RecordingProxy) -> None:
    client = routed.openai()
    ids = [m.id for m in client.models.list()]  # lists the catalog (the llama.cpp server's model)
    assert "smollm2" in ids
    client.chat.completions.create(model="smollm2", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    [request] = llama_proxy.chat_requests()
    assert request["model"] == "smollm2" and request["seed"] in (11, 22)
