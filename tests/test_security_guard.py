"""The guard: a key is checked, and the key's request limit counted, before any body byte is read, on
every route (OpenAI, memory, dashboard, docs, metrics); the body limits hold while the body arrives.
Real gateway under uvicorn on a loopback port, real HTTP clients and raw sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fixtures_gateway import GatewayServer, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory

Serve = Callable[..., GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
ADMIN, LIMITED = "sk-guard-admin", "sk-guard-limited"
UNUSED_UPSTREAM = "http://127.0.0.1:9/v1"  # never called: every request here is refused before the model


def _config(**gateway: Any) -> MindgateConfig:
    return MindgateConfig.from_dict({"gateway": {"api_keys": [
        {"name": "admin", "key": ADMIN},
        {"name": "limited", "key": LIMITED, "requests_per_minute": 3},
    ], **gateway}})


@pytest.fixture
def guarded(serve_gateway: Serve, memory_factory: MakeMemory) -> GatewayServer:
    config = _config(body_timeout_s=0.5, max_body_bytes=4096)
    return serve_gateway(create_app(config, chat=llama_chat(UNUSED_UPSTREAM), memory=memory_factory(),
                                    warm_up=False), config)


def _raw(server: GatewayServer, request: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes it or stops sending."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data and _complete(data):
                    break
        except TimeoutError:
            pass
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_without_a_key_an_invalid_body_is_a_401_not_a_400(guarded: GatewayServer) -> None:
    with guarded.http() as http:
        for method, path, body in (("POST", "/v1/chat/completions", {"model": 5, "messages": "nope"}),
                                   ("POST", "/v1/embeddings", {"input": []}),
                                   ("POST", "/v1/memories", {"messages": None}),
                                   ("POST", "/v1/memories/search", {"limit": -1}),
                                   ("POST", "/ui/api/models/load", {"bogus": True}),
                                   ("POST", "/v1/responses", {"x": 1}),
                                   ("POST", "/mcp", {"jsonrpc": "2.0"})):
            response = http.request(method, path, json=body)
            assert response.status_code == 401, (path, response.text)
            error = response.json()["error"]
            assert error["type"] == "authentication_error" and "messages" not in error["message"]


def test_a_401_does_not_wait_for_the_body(guarded: GatewayServer) -> None:
    # headers that announce 3 MB, and no body at all: the answer comes without a byte of it
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 3000000\r\n\r\n")
    answer = _raw(guarded, head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"connection: close" in answer.lower()  # the rest of a large body is not read and discarded


def test_docs_and_metrics_follow_the_key_policy(guarded: GatewayServer, serve_gateway: Serve,
                                                memory_factory: MakeMemory) -> None:
    with guarded.http() as anonymous, guarded.http(ADMIN) as admin:
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics", "/ui/api/session", "/v1/models"):
            assert anonymous.get(path).status_code == 401, path
            assert admin.get(path).status_code == 200, path
        for path in ("/healthz", "/ui", "/ui/static/ui.js"):  # public: liveness and the data-less shell
            assert anonymous.get(path).status_code == 200, path
    config = _config(docs=False)
    off = serve_gateway(create_app(config, chat=llama_chat(UNUSED_UPSTREAM), memory=memory_factory(),
                                   warm_up=False))
    with off.http(ADMIN) as admin:
        assert [admin.get(p).status_code for p in ("/docs", "/redoc", "/openapi.json")] == [404, 404, 404]


def test_every_route_counts_against_the_request_limit_invalid_requests_included(guarded: GatewayServer) -> None:
    with guarded.http(ADMIN) as admin:  # the dashboard's first use builds its model manager (seconds)
        assert admin.get("/ui/api/models").status_code == 200
    with guarded.http(LIMITED) as http:
        assert http.get("/v1/models").status_code == 200
        assert http.post("/v1/chat/completions", json={"model": 1}).status_code == 400  # invalid: still counted
        assert http.get("/ui/api/models", params={"refresh": "true"}).status_code == 200
        for path in ("/metrics", "/v1/models", "/ui/api/routing"):
            refused = http.get(path)
            assert refused.status_code == 429, path
            assert int(refused.headers["retry-after"]) >= 1 and "3 requests per minute" in refused.text
    with guarded.http(ADMIN) as admin:
        assert admin.get("/v1/models").status_code == 200  # other keys are not limited


def test_a_body_over_the_limit_is_refused_while_it_arrives(guarded: GatewayServer) -> None:
    with guarded.http(ADMIN) as http:
        declared = http.post("/v1/memories", content=b"x" * 5000, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and "4096 bytes" in declared.json()["error"]["message"]

        def chunks() -> Any:
            for _ in range(100):
                yield b"y" * 1000

        chunked = http.post("/v1/memories", content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413


def test_a_body_that_stops_arriving_is_a_408_and_the_connection_closes(guarded: GatewayServer) -> None:
    head = (b"POST /v1/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + ADMIN.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"messages\": ")
    answer = _raw(guarded, head)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"


def test_a_valid_request_still_goes_through(guarded: GatewayServer) -> None:
    with guarded.http(ADMIN) as http:
        made = http.post("/v1/memories", json={"messages": "I like tea.", "user_id": "u", "infer": False})
        assert made.status_code == 200, made.text
        listed = http.get("/v1/memories", params={"user_id": "u"}).json()["results"]
        assert [m["memory"] for m in listed] == ["I like tea."]
    with httpx.Client(base_url=guarded.base_url, timeout=10) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
