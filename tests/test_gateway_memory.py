"""Memory through the gateway: the REST API, memory injection as the upstream receives it, and the
background add after the answer (real llama.cpp server behind a recording proxy, real MiniLM + SQLite)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from fixtures_servers import free_port
from metrics_helpers import sample
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._extraction import SYSTEM_PROMPT
from mindgate.memory._memory import AsyncMemory
from mindgate.pipeline import INJECT_HEADER
from mindgate.routing._retry import RetryPolicy

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]


@pytest.fixture
def gateway(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> GatewayServer:
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    return serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory(chat)))


def _seed(http: httpx.Client, text: str, user: str, **extra: Any) -> str:
    response = http.post("/v1/memories", json={"messages": text, "user_id": user, "infer": False, **extra})
    assert response.status_code == 200, response.text
    [item] = response.json()["results"]
    assert item["event"] == "ADD"
    return str(item["id"])


def _is_extraction(body: Any) -> bool:
    messages = body.get("messages") if isinstance(body, dict) else None
    return bool(messages) and str(messages[0].get("content", "")).startswith(SYSTEM_PROMPT[:60])


def _extraction_requests(proxy: RecordingProxy) -> list[dict[str, Any]]:
    return [r for r in proxy.chat_requests() if _is_extraction(r)]


def _metric(server: GatewayServer, name: str, **labels: str) -> float:
    return sample(httpx.get(f"{server.base_url}/metrics").text, name, **labels) or 0.0


def _wait_for(condition: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_memory_rest_api_round_trip(gateway: GatewayServer) -> None:
    with gateway.http() as http:
        first = _seed(http, "I play the cello in an orchestra.", "alice", metadata={"topic": "music"})
        second = _seed(http, "My sister lives in Porto.", "alice", metadata={"topic": "family"})
        _seed(http, "I dislike cello music.", "bob")

        listed = http.get("/v1/memories", params={"user_id": "alice"}).json()
        assert {m["id"] for m in listed["results"]} == {first, second}
        filtered = http.get("/v1/memories", params={"user_id": "alice", "filters": json.dumps({"topic": "family"})})
        assert [m["id"] for m in filtered.json()["results"]] == [second]
        paged = http.get("/v1/memories", params={"user_id": "alice", "limit": 1, "offset": 1}).json()
        assert len(paged["results"]) == 1 and paged["offset"] == 1

        found = http.post("/v1/memories/search", json={"query": "which instrument do I play?",
                                                       "user_id": "alice"}).json()["results"]
        assert found[0]["id"] == first and all(m["user_id"] == "alice" for m in found)
        dated = _seed(http, "I played the cello at a concert.", "alice", metadata={"date": "2023-05-02T19:00:00Z"})
        in_may = http.post("/v1/memories/search", json={"query": "which instrument did I play in May?",
                                                        "user_id": "alice", "reference_time": "2023-07-01T00:00:00Z",
                                                        "explain": True}).json()["results"]
        assert in_may[0]["id"] == dated and in_may[0]["explain"]["signals"]["time"]["raw"] == 1.0
        http.delete(f"/v1/memories/{dated}", params={"user_id": "alice"})

        assert http.get(f"/v1/memories/{first}", params={"user_id": "alice"}).json()["memory"].startswith("I play")
        updated = http.put(f"/v1/memories/{first}", params={"user_id": "alice"},
                           json={"text": "I play the viola in an orchestra."})
        assert updated.status_code == 200 and updated.json()["event"] == "UPDATE"
        history = http.get(f"/v1/memories/{first}/history", params={"user_id": "alice"}).json()
        assert [h["event"] for h in history] == ["ADD", "UPDATE"]
        assert history[1]["old_memory"].startswith("I play the cello")

        assert http.delete(f"/v1/memories/{first}", params={"user_id": "alice"}).status_code == 200
        gone = http.get(f"/v1/memories/{first}", params={"user_id": "alice"})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        assert http.get(f"/v1/memories/{first}/history").json()[-1]["event"] == "DELETE"  # history keeps it

        # bob's memory is not alice's: reading it in alice's scope is a 404
        bobs = http.get("/v1/memories", params={"user_id": "bob"}).json()["results"][0]["id"]
        assert http.get(f"/v1/memories/{bobs}", params={"user_id": "alice"}).status_code == 404

        cleared = http.delete("/v1/memories", params={"user_id": "alice"}).json()
        assert cleared["deleted"] == 1 and http.get("/v1/memories", params={"user_id": "alice"}).json()["results"] == []


@pytest.mark.parametrize(("method", "path", "kwargs", "words"), [
    ("GET", "/v1/memories", {}, "scope"),
    ("GET", "/v1/memories", {"params": {"user_id": "a", "filters": "{oops"}}, "JSON"),
    ("GET", "/v1/memories", {"params": {"user_id": "a", "filters": json.dumps({"x": {"regex": "."}})}}, "regex"),
    ("POST", "/v1/memories", {"json": {"messages": "hi"}}, "scope"),
    ("POST", "/v1/memories/search", {"json": {"query": "", "user_id": "a"}}, "query"),
    ("PUT", "/v1/memories/x", {"json": {"text": "a", "data": "b"}}, "exactly one"),
    ("GET", "/v1/memories", {"params": {"user_id": "a", "limit": 0}}, "limit"),
    ("POST", "/v1/memories/search", {"json": {"query": "x", "user_id": "a", "reference_time": "soon"}},
     "reference_time"),
])
def test_memory_api_bad_input_is_a_clear_400(gateway: GatewayServer, method: str, path: str, kwargs: dict[str, Any],
                                             words: str) -> None:
    with gateway.http() as http:
        response = http.request(method, path, **kwargs)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]


def test_memories_are_injected_into_the_prompt_the_upstream_receives(gateway: GatewayServer,
                                                                     llama_proxy: RecordingProxy) -> None:
    with gateway.http() as http:
        _seed(http, "My favourite colour is teal.", "carol")
        _seed(http, "I am allergic to peanuts.", "carol")
        _seed(http, "My favourite colour is orange.", "dave")
    client = gateway.openai()
    question = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is my favourite colour?"}]
    raw = client.chat.completions.with_raw_response.create(model="smollm2", messages=question, user="carol",
                                                           max_tokens=8, temperature=0,
                                                           extra_body={"memory": True})
    assert raw.headers["x-mindgate-memories"] == "2"
    sent = llama_proxy.chat_requests()[0]["messages"]
    # one system message: the caller's, with the memories appended; the user turn unchanged
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("You are terse.")
    assert INJECT_HEADER in sent[0]["content"] and "teal" in sent[0]["content"]
    assert "orange" not in sent[0]["content"]  # dave's memory never reaches carol's prompt
    assert sent[1:] == question[1:]

    # the header names the user too; memory can be switched off per request by body or header
    client.chat.completions.create(model="smollm2", messages=question[1:], max_tokens=4,
                                   extra_headers={"X-Mindgate-User": "dave", "X-Mindgate-Memory": "off"})
    client.chat.completions.create(model="smollm2", messages=question[1:], max_tokens=4, user="dave",
                                   extra_body={"memory": False})
    for request in llama_proxy.chat_requests()[1:]:
        assert not any(INJECT_HEADER in str(m.get("content")) for m in request["messages"])


def test_the_turn_is_remembered_in_the_background_after_the_answer(gateway: GatewayServer,
                                                                   llama_proxy: RecordingProxy) -> None:
    client = gateway.openai()
    turn = "My name is Erin and I keep three goats on my farm in Wales."
    stream = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": turn}],
                                            max_tokens=16, temperature=0, stream=True,
                                            extra_headers={"X-Mindgate-User": "erin"})
    answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    answered = time.monotonic()
    # the extraction call (json_schema first, then the json_object form the llama.cpp server takes)
    # reaches the upstream only after the answer was complete, with the user's turn and the answer
    _wait_for(lambda: bool(_extraction_requests(llama_proxy)))
    conversation = "\n".join(str(m.get("content")) for m in _extraction_requests(llama_proxy)[0]["messages"])
    assert "three goats" in conversation and answer.strip().split("\n")[0][:20] in conversation
    extraction_at = next(r.at for r in llama_proxy.requests if _is_extraction(r.json))
    assert extraction_at >= answered - 0.05
    _wait_for(lambda: _metric(gateway, "mindgate_memory_writes_total", outcome="ok")
              + _metric(gateway, "mindgate_memory_writes_total", outcome="failed") >= 1)
    if _metric(gateway, "mindgate_memory_writes_total", outcome="ok"):
        with gateway.http() as http:
            stored = http.get("/v1/memories", params={"user_id": "erin"}).json()["results"]
        assert all(m["user_id"] == "erin" for m in stored)


def test_a_failed_background_write_is_logged_and_counted(serve_gateway: Serve, llama_proxy: RecordingProxy,
                                                         memory_factory: MakeMemory,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    dead_llm = llama_chat(f"http://127.0.0.1:{free_port()}/v1")  # memory extraction cannot reach its model
    app = create_app(MindgateConfig.from_dict({}), chat=llama_chat(f"{llama_proxy.base_url}/v1"),
                     memory=memory_factory(dead_llm))
    app.state.gateway.writer.retry = RetryPolicy(retries=2, backoff_base=0.01, backoff_max=0.05)
    server = serve_gateway(app)
    with caplog.at_level(logging.ERROR, logger="mindgate.pipeline.memory"):
        raw = server.openai().chat.completions.with_raw_response.create(
            model="smollm2", messages=[{"role": "user", "content": "I like tea."}], user="frank", max_tokens=4)
        assert raw.parse().choices[0].message.content is not None  # the answer is not held up by the failure
        _wait_for(lambda: _metric(server, "mindgate_memory_writes_total", outcome="failed") == 1, timeout=30)
    request_id = raw.headers["x-request-id"]
    [record] = [r for r in caplog.records if request_id in r.getMessage()]
    assert "frank" in record.getMessage() and "3 attempt" in record.getMessage()
