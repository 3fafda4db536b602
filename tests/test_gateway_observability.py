"""Request ids, structured access logs without message contents, Prometheus metrics, health and readiness."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from fixtures_servers import free_port
from metrics_helpers import sample
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.routing._router import Router

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
SECRET = "my passport number is X1234567"


@pytest.fixture
def gateway(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> GatewayServer:
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    return serve_gateway(create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}), chat=chat,
                                    memory=memory_factory(chat)))


def test_request_ids(gateway: GatewayServer) -> None:
    with gateway.http() as http:
        made = http.get("/healthz").headers["x-request-id"]
        assert len(made) == 32 and made != http.get("/healthz").headers["x-request-id"]
        assert http.get("/healthz", headers={"X-Request-Id": "trace-abc.1"}).headers["x-request-id"] == "trace-abc.1"
        bad = http.get("/healthz", headers={"X-Request-Id": "no spaces; or <tags>"}).headers["x-request-id"]
        assert bad != "no spaces; or <tags>" and len(bad) == 32
        assert http.get("/v1/nope").headers["x-request-id"]  # errors carry one too


def test_access_log_is_json_without_message_contents(gateway: GatewayServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mindgate.access"):
        raw = gateway.openai().chat.completions.with_raw_response.create(
            model="smollm2", messages=[{"role": "user", "content": SECRET}], max_tokens=4, user="zoe")
        gateway.openai().embeddings.create(model="e", input=SECRET)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mindgate.access"]
    chat = next(line for line in lines if line["request_id"] == raw.headers["x-request-id"])
    assert chat["route"] == "/v1/chat/completions" and chat["status"] == 200 and chat["model"] == "smollm2"
    assert chat["completion_tokens"] > 0 and chat["duration_ms"] > 0
    assert any(line["route"] == "/v1/embeddings" for line in lines)
    assert "X1234567" not in caplog.text  # no message contents in any log line


def test_metrics(gateway: GatewayServer) -> None:
    client = gateway.openai()
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    list(client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}],
                                        max_tokens=3, stream=True))
    for name in ("made-up-1", "made-up-2"):  # names the gateway does not know share one bounded label
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    with gateway.http() as http:
        http.get("/v1/unknown")
        text = http.get("/metrics").text
    assert sample(text, "mindgate_requests_total", route="/v1/chat/completions", method="POST", status="200") == 4
    assert sample(text, "mindgate_requests_total", route="unmatched", method="GET", status="404") == 1
    assert sample(text, "mindgate_chat_completions_total", model="auto", stream="true") == 1
    assert sample(text, "mindgate_chat_completions_total", model="other", stream="false") == 2
    assert "made-up" not in text
    assert sample(text, "mindgate_request_duration_seconds_count", route="/v1/chat/completions") == 4
    assert all((sample(text, "mindgate_tokens_total", model="auto", kind=kind) or 0) > 0
               for kind in ("prompt", "completion"))
    assert (sample(text, "mindgate_process_resident_memory_bytes") or 0) > 0


def test_router_breakers_and_fallbacks_in_metrics_and_readiness(serve_gateway: Serve, llama_proxy: RecordingProxy,
                                                                memory_factory: MakeMemory) -> None:
    dead = llama_chat(f"http://127.0.0.1:{free_port()}/v1")
    dead.model = "down"
    router = Router([dead, llama_chat(f"{llama_proxy.base_url}/v1")], name="main", breaker_failures=1)
    server = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=router, memory=memory_factory()))
    answer = server.openai().chat.completions.create(model="main", messages=[{"role": "user", "content": "Hi"}],
                                                     max_tokens=3)
    assert answer.choices[0].message.content is not None  # served by the second target
    with server.http() as http:
        text = http.get("/metrics").text
        ready = http.get("/readyz")
    assert sample(text, "mindgate_breaker_state", chain="auto", target="openai_compatible:down") == 2
    assert sample(text, "mindgate_breaker_state", chain="auto", target="openai_compatible:smollm2") == 0
    assert sample(text, "mindgate_fallbacks_total", chain="auto") == 1
    assert sample(text, "mindgate_target_errors_total", chain="auto", target="openai_compatible:down",
                  kind="network") is not None
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_readiness_fails_when_no_chat_target_is_usable(serve_gateway: Serve, memory_factory: MakeMemory) -> None:
    dead = llama_chat(f"http://127.0.0.1:{free_port()}/v1")
    server = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=Router([dead], breaker_failures=1),
                                      memory=memory_factory()))
    with server.http() as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
    assert ready.status_code == 503
    assert "not reachable" in ready.json()["problems"]["chat"]


def test_metrics_need_a_key_when_keys_are_configured(serve_gateway: Serve, llama_proxy: RecordingProxy,
                                                     memory_factory: MakeMemory) -> None:
    config = MindgateConfig.from_dict({"gateway": {"api_keys": [{"key": "sk-ops"}]}})
    server = serve_gateway(create_app(config, chat=llama_chat(f"{llama_proxy.base_url}/v1"), memory=memory_factory()))
    with server.http() as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer sk-ops"}).status_code == 200


def test_liveness_is_answered_by_the_front_door_even_when_the_app_stack_is_stuck(
        llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> None:
    app = create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}),
                     chat=llama_chat(f"{llama_proxy.base_url}/v1"), memory=memory_factory())
    front = app.build_middleware_stack()
    stuck = asyncio.Event()

    async def app_stack(scope: Any, receive: Any, send: Any) -> None:
        await stuck.wait()  # never set: a route that never answers

    front.app = app_stack  # type: ignore[attr-defined]

    async def get(path: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 8000),
                 "scheme": "http", "http_version": "1.1", "root_path": "", "app": app}
        await asyncio.wait_for(front(scope, receive, send), timeout)
        return sent

    start, body = asyncio.run(get("/healthz"))
    assert start["status"] == 200 and json.loads(body["body"]) == {"status": "ok"}
    assert dict(start["headers"])[b"content-type"] == b"application/json"
    assert dict(start["headers"])[b"x-request-id"]
    assert app.state.gateway.metrics.requests[("/healthz", "GET", 200)] == 1
    with pytest.raises(TimeoutError):  # the other routes do go through the (stuck) app stack
        asyncio.run(get("/readyz", 0.3))


def test_memory_search_is_served_by_the_front_door_and_an_invalid_body_by_the_app_stack(
        llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> None:
    memory = memory_factory()
    app = create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}),
                     chat=llama_chat(f"{llama_proxy.base_url}/v1"), memory=memory)
    front = app.build_middleware_stack()
    stuck = asyncio.Event()

    async def app_stack(scope: Any, receive: Any, send: Any) -> None:
        await stuck.wait()  # never set: only what the front door serves itself answers

    front.app = app_stack  # type: ignore[attr-defined]

    async def post(body: dict[str, Any]) -> list[dict[str, Any]]:
        raw = json.dumps(body).encode()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/memories/search", "raw_path": b"/v1/memories/search",
                 "query_string": b"", "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 8000), "scheme": "http",
                 "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(raw)).encode())],
                 "http_version": "1.1", "root_path": "", "app": app}
        await asyncio.wait_for(front(scope, receive, send), 10.0)
        return sent

    async def scenario() -> None:
        await memory.add("My sister lives in Lisbon.", user_id="ana", infer=False)
        start, body = await post({"query": "Where does my sister live?", "user_id": "ana"})
        assert start["status"] == 200
        assert [r["memory"] for r in json.loads(body["body"])["results"]] == ["My sister lives in Lisbon."]
        assert app.state.gateway.metrics.requests[("/v1/memories/search", "POST", 200)] == 1
        with pytest.raises(TimeoutError):  # limit 0 fails validation: FastAPI's stack (stuck here) gives the 400
            await post({"query": "sister", "user_id": "ana", "limit": 0})

    asyncio.run(scenario())
