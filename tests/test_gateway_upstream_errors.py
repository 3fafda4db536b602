"""An upstream's odd answer reaches a gateway client as the right HTTP error, never a 500: a 429 whose
``Retry-After`` is neither seconds nor a date (it used to raise a bare ValueError inside the provider, which
``/v1/memories`` answered 500 when the memory's model was not wrapped in a router). The upstream is a real
loopback HTTP server answering from a script (tests/routing_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fixtures_gateway import GatewayServer
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from routing_helpers import ScriptedServer, Step, chat_model


@pytest.fixture
def limited() -> Iterator[ScriptedServer]:
    server = ScriptedServer(*[Step(429, {"Retry-After": "soon"})] * 4).start()
    yield server
    server.stop()


def test_memories_with_an_upstream_429_of_unreadable_retry_after_is_a_429(
        limited: ScriptedServer, serve_gateway: Callable[[Any], GatewayServer],
        memory_factory: Callable[..., AsyncMemory]) -> None:
    llm = chat_model(f"{limited.base_url}/v1", "scripted")
    gateway = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=llm, memory=memory_factory(llm)))
    with gateway.http() as http:
        answer = http.post("/v1/memories", json={"messages": [{"role": "user", "content": "I like tea."}],
                                                 "user_id": "ann"})
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    assert error["type"] == "rate_limit_error" and "rate limiting" in error["message"]
    assert "Retry-After" not in answer.headers  # the upstream gave no usable delay, so none is invented
    assert limited.chat_requests >= 1
