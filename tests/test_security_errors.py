"""Error bodies name what was wrong, never internals: a filter over its term limit is a 400 naming the
limit (it was a 500 naming the store's path), a store failure during a read says "read" and gives the
request id while the path and the driver's message go to the log. Real gateway, real SQLite store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from fixtures_gateway import GatewayServer, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._filters import MAX_TERMS
from mindgate.memory._memory import AsyncMemory

Serve = Callable[..., GatewayServer]
MakeMemory = Callable[..., AsyncMemory]


@pytest.fixture
def served(serve_gateway: Serve, memory_factory: MakeMemory) -> tuple[GatewayServer, AsyncMemory]:
    memory = memory_factory()
    app = create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}),
                     chat=llama_chat("http://127.0.0.1:9/v1"), memory=memory, warm_up=False)
    return serve_gateway(app), memory


def test_many_filter_terms_are_a_400_naming_the_limit(served: tuple[GatewayServer, AsyncMemory]) -> None:
    server, memory = served
    with server.http() as http:
        assert http.post("/v1/memories", json={"messages": "x", "user_id": "u", "infer": False}).status_code == 200
        many_in = {"n": {"in": list(range(994))}}
        ok = http.get("/v1/memories", params={"user_id": "u", "filters": json.dumps(many_in)})
        assert ok.status_code == 200, ok.text
        ors = {"OR": [{"n": i} for i in range(494)]}
        refused = http.get("/v1/memories", params={"user_id": "u", "filters": json.dumps(ors)})
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert f"the limit is {MAX_TERMS}" in message and str(Path(memory.store.path).parent) not in message


def test_a_store_read_failure_says_read_and_names_no_path(served: tuple[GatewayServer, AsyncMemory],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    server, memory = served
    with server.http() as http:
        assert http.post("/v1/memories", json={"messages": "I like tea.", "user_id": "u",
                                               "infer": False}).status_code == 200
        path = str(memory.store.path)
        broken = apsw.Connection(path)  # damage the store from outside: its full-text index is gone
        broken.execute("ALTER TABLE memories RENAME TO memories_gone")
        broken.close()
        with caplog.at_level(logging.ERROR, logger="mindgate.gateway"):
            failed = http.get("/v1/memories", params={"user_id": "u"})
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert "during a read" in error["message"] and error["code"] == "store_error"
        assert failed.headers["x-request-id"] in error["message"]
        assert path not in failed.text and "no such table" not in failed.text and "write" not in error["message"]
        assert path in caplog.text and failed.headers["x-request-id"] in caplog.text
