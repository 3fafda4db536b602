"""Browsers' DNS rebinding and cross-site requests are refused on every route of a loopback gateway, while
real clients (the official openai SDK, plain HTTP clients: no Origin) and the dashboard on its own origin
work. Real gateway under uvicorn on a loopback port, no API keys (the default a local user runs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fixtures_gateway import GatewayServer, llama_chat
from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory

Serve = Callable[..., GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
UNUSED_UPSTREAM = "http://127.0.0.1:9/v1"  # never called: no request here needs a model
USER = "victim"


def _start(serve_gateway: Serve, memory_factory: MakeMemory, **gateway: Any) -> GatewayServer:
    config = MindgateConfig.from_dict({"gateway": gateway})
    return serve_gateway(create_app(config, chat=llama_chat(UNUSED_UPSTREAM), memory=memory_factory(),
                                    warm_up=False), config)


def _refused(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["type"] == "permission_error" and setting in error["message"]


def _memories(http: httpx.Client) -> int:
    response = http.get("/v1/memories", params={"user_id": USER})
    assert response.status_code == 200, response.text
    return len(response.json()["results"])


def test_rebinding_and_cross_site_requests_are_refused_on_every_route(serve_gateway: Serve,
                                                                     memory_factory: MakeMemory) -> None:
    server = _start(serve_gateway, memory_factory)
    write = json.dumps({"messages": "the door code is 4711", "user_id": USER, "infer": False})
    rebound = {"Host": f"attacker.example:{server.port}"}  # a page whose name now resolves to 127.0.0.1
    with server.http() as http:
        for method, path in (("GET", "/v1/models"), ("GET", "/healthz"), ("GET", "/ui/api/session"),
                             ("GET", "/v1/memories?user_id=victim"), ("POST", "/mcp"), ("GET", "/nowhere")):
            _refused(http.request(method, path, headers=rebound), "gateway.allowed_hosts")
        _refused(http.post("/v1/memories", content=write, headers={**rebound, "Content-Type": "text/plain"}),
                 "gateway.allowed_hosts")
        # a "simple" cross-site request (no preflight) from a page on another site, and a sandboxed one
        for origin in ("https://attacker.example", f"http://attacker.example:{server.port}", "null"):
            _refused(http.post("/v1/memories", content=write, headers={"Origin": origin, "Content-Type": "text/plain"}),
                     "gateway.cors_origins")
        assert _memories(http) == 0  # nothing was written


def test_real_clients_and_the_dashboard_are_unaffected(serve_gateway: Serve, memory_factory: MakeMemory) -> None:
    server = _start(serve_gateway, memory_factory)
    assert [m.id for m in server.openai().models.list().data]  # the official SDK: Host 127.0.0.1:port
    with httpx.Client(base_url=f"http://localhost:{server.port}", timeout=60) as http:
        assert http.get("/healthz").status_code == 200  # Host localhost:port
        assert http.get("/healthz", headers={"Host": "localhost:9000"}).status_code == 200  # a forwarded port
        assert http.get("/ui").status_code == 200
        own = {"Origin": f"http://localhost:{server.port}"}  # what the dashboard's fetch() sends
        assert http.get("/ui/api/session", headers=own).status_code == 200
        response = http.post("/v1/memories", json={"messages": "likes green tea", "user_id": USER, "infer": False},
                             headers=own)
        assert response.status_code == 200, response.text
        # another page on this machine (a local dev server, the MCP inspector) is not foreign
        assert http.get("/ui/api/session", headers={"Origin": "http://127.0.0.1:3000"}).status_code == 200
        assert _memories(http) == 1


def test_configured_hosts_and_origins_are_allowed(serve_gateway: Serve, memory_factory: MakeMemory) -> None:
    server = _start(serve_gateway, memory_factory, allowed_hosts=["mindgate.lan", f"proxy.lan:{8080}"],
                    cors_origins=["https://app.example"])
    with server.http() as http:
        named = {"Host": f"mindgate.lan:{server.port}", "Origin": f"http://mindgate.lan:{server.port}"}
        assert http.get("/ui/api/session", headers=named).status_code == 200  # the dashboard under its name
        assert http.get("/healthz", headers={"Host": "proxy.lan:8080"}).status_code == 200
        _refused(http.get("/healthz", headers={"Host": "proxy.lan:8081"}), "gateway.allowed_hosts")
        assert http.get("/healthz", headers={"Origin": "https://app.example"}).status_code == 200
        _refused(http.get("/healthz", headers={"Origin": "https://other.example"}), "gateway.cors_origins")
    server = _start(serve_gateway, memory_factory, allowed_hosts=["*"])  # behind a proxy that rewrites Host
    with server.http() as http:
        assert http.get("/healthz", headers={"Host": "anything.example"}).status_code == 200


def test_allowed_hosts_entries_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="allowed_hosts"):
        MindgateConfig.from_dict({"gateway": {"allowed_hosts": ["http://mindgate.lan/"]}})
