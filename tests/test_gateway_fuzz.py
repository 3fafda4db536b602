"""Property-based fuzzing of the gateway's OpenAPI schema with schemathesis: no generated input, valid or
invalid, may produce a 5xx. Every error must be OpenAI's error shape.

The gateway runs under uvicorn (real HTTP) over the real llama.cpp server, the real MiniLM embedder and SQLite.
Valid chat, responses and completions requests are generated with ``max_tokens`` / ``max_output_tokens``
capped at 4 and at most two prompts (so each costs the real model a fraction of a second), and without
``tools`` / ``response_format`` / ``text`` / image parts: what an upstream does with an arbitrary JSON
Schema or an image sent to a text-only model is the upstream's business (the llama.cpp server answers some
with HTTP 500, which the gateway reports as a 502), and their validation and pass-through have their own
tests. Even so, a valid request can make the upstream fail (HTTP 5xx); the
gateway must then answer 502 naming the upstream's failure, and that is the only 5xx accepted. Invalid
requests are generated for every operation, those fields included. Bounded so that it runs in about a
minute or two on 2 cores.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from fixtures_gateway import GatewayServer, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers.local import SentenceTransformerEmbedder

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
COMPLETIONS = "/v1/completions"
TOKEN_CAP = 4


def _openapi() -> dict[str, Any]:
    """The gateway's OpenAPI document (it depends on the routes only, so cheap parts serve to build it)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "spec.db")
        memory = AsyncMemory(embedder=SentenceTransformerEmbedder(), store=store)
        app = create_app(MindgateConfig.from_dict({}, env=False), chat=llama_chat("http://127.0.0.1:9/v1"),
                         memory=memory, warm_up=False)
        spec: dict[str, Any] = app.openapi()
        store.close()
    return spec


schema = schemathesis.openapi.from_dict(_openapi())
schema.config.phases.update(phases=["examples", "fuzzing"])


@pytest.fixture
def gateway(serve_gateway: Callable[[Any], GatewayServer], llama_server: Any,
            memory_factory: Callable[..., AsyncMemory]) -> GatewayServer:
    config = MindgateConfig.from_dict({"gateway": {"memory": False, "max_body_bytes": 256 * 1024}})
    chat = llama_chat(llama_server.base_url, timeout=60)
    return serve_gateway(create_app(config, chat=chat, memory=memory_factory(chat)))


def _tame(case: Any) -> None:
    """Keep valid chat, responses and completions requests cheap for the real model (see the module
    docstring)."""
    body = case.body
    if case.path not in (CHAT, RESPONSES, COMPLETIONS) or not isinstance(body, dict) or case.meta is None \
            or case.meta.generation.mode.is_negative:
        return
    if case.path == COMPLETIONS:
        body["max_tokens"] = TOKEN_CAP
        body["n"] = body["best_of"] = 1
        if isinstance(body.get("prompt"), list):
            body["prompt"] = body["prompt"][:2] or "x"
        return
    if case.path == RESPONSES:
        body["max_output_tokens"] = TOKEN_CAP
        for name in ("tools", "tool_choice", "text", "previous_response_id"):
            body.pop(name, None)
        return
    body["max_tokens"] = TOKEN_CAP
    body.pop("max_completion_tokens", None)
    body.pop("tools", None)
    body.pop("tool_choice", None)
    body.pop("response_format", None)
    body["n"] = 1
    for message in body.get("messages", []):
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message["content"] = [p for p in message["content"] if isinstance(p, dict) and p.get("type") == "text"] \
                or "(an image was here)"


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: Any, gateway: GatewayServer) -> None:
    _tame(case)
    response = case.call(base_url=gateway.base_url, timeout=120)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if _upstream_failure(case, response):
        return
    assert response.status_code < 500, (response.status_code, response.text[:500], case.body)


def _upstream_failure(case: Any, response: Any) -> bool:
    """A schema-valid model request the real upstream itself failed on (HTTP 5xx from the llama.cpp server,
    e.g. its chat template choking on an assistant message with tool calls, or an empty raw prompt),
    relayed as a 502 that says so. Never accepted for invalid input, which must not reach the upstream."""
    if case.path not in (CHAT, RESPONSES, COMPLETIONS) or case.meta is None or case.meta.generation.mode.is_negative:
        return False
    if response.status_code != 502:
        return False
    error = response.json()["error"]
    return error["code"] == "upstream_error" and "answered HTTP 5" in error["message"]
