"""Connection limits of the server as ``mindgate serve`` runs it (real uvicorn on a loopback port, raw
sockets): idle keep-alive above client pools' expiry, a header timeout for connections that never send a
complete request (slow-loris, connect-only), and a bound on open connections answered 503 + Retry-After."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from fixtures_gateway import GatewayServer, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.gateway._server import uvicorn_config
from mindgate.memory._memory import AsyncMemory

Serve = Callable[..., GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
UNUSED_UPSTREAM = "http://127.0.0.1:9/v1"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _server(serve: Serve, make_memory: MakeMemory, **gateway: object) -> GatewayServer:
    config = MindgateConfig.from_dict({"gateway": gateway})
    app = create_app(config, chat=llama_chat(UNUSED_UPSTREAM), memory=make_memory(), warm_up=False)
    return serve(app, config)


@contextmanager
def _connection(server: GatewayServer, timeout: float = 5.0) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        yield sock


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _closed_by_server(sock: socket.socket) -> tuple[bytes, float]:
    """What the server sent until it closed the connection, and when (seconds from now)."""
    started = time.monotonic()
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def test_default_keep_alive_is_well_above_client_pools() -> None:
    config = MindgateConfig.from_dict({})
    options = uvicorn_config(object(), config, host="127.0.0.1", port=0)
    assert options.timeout_keep_alive == 65 > httpx.Limits().keepalive_expiry  # httpx pools expire at 5 s


def test_an_idle_connection_outlives_a_client_pools_expiry(serve_gateway: Serve, memory_factory: MakeMemory) -> None:
    server = _server(serve_gateway, memory_factory)  # the default keep-alive
    with _connection(server, timeout=10) as sock:
        sock.sendall(HEALTH)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(5.3)  # just past httpx's pool expiry, where uvicorn's default (5 s) had closed it
        sock.sendall(HEALTH)
        assert _response(sock).startswith(b"HTTP/1.1 200")


def test_the_server_closes_a_connection_idle_past_its_keep_alive(serve_gateway: Serve,
                                                                 memory_factory: MakeMemory) -> None:
    server = _server(serve_gateway, memory_factory, keep_alive_s=0.5)
    with _connection(server) as sock:
        sock.sendall(HEALTH)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        data, after = _closed_by_server(sock)
        assert data == b"" and after < 3


def test_connections_that_never_complete_their_headers_get_a_408_and_are_closed(
        serve_gateway: Serve, memory_factory: MakeMemory) -> None:
    server = _server(serve_gateway, memory_factory, header_timeout_s=0.5)
    with _connection(server) as idle:  # connects and sends nothing
        data, after = _closed_by_server(idle)
        assert data.startswith(b"HTTP/1.1 408") and after < 3
        assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    with _connection(server) as trickle:  # slow-loris: a header byte every 0.1 s, never finishing
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60:
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        if not closed:
            data, _ = _closed_by_server(trickle)
            assert data.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 4
    with _connection(server) as kept:  # a connection that keeps sending requests is not cut
        for _ in range(3):
            kept.sendall(HEALTH)
            assert _response(kept).startswith(b"HTTP/1.1 200")
            time.sleep(0.3)


def test_connections_beyond_the_bound_get_a_503_with_retry_after(serve_gateway: Serve,
                                                                 memory_factory: MakeMemory) -> None:
    server = _server(serve_gateway, memory_factory, max_connections=3, header_timeout_s=5)
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(_connection(server))
        time.sleep(0.2)  # the server has accepted them
        with _connection(server) as extra:
            extra.sendall(HEALTH)
            answer = _response(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
        error = json.loads(body)["error"]
        assert error["code"] == "server_overloaded" and "3 open connections" in error["message"]
    time.sleep(0.2)
    with httpx.Client(base_url=server.base_url, timeout=5) as client:  # below the bound again
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("key", ["keep_alive_s", "header_timeout_s", "body_timeout_s", "max_connections"])
def test_the_limits_are_validated_config(key: str) -> None:
    from mindgate.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=key):
        MindgateConfig.from_dict({"gateway": {key: 0}})


def test_the_server_freezes_its_heap_once_warmed_up_and_other_apps_do_not(serve_gateway: Serve,
                                                                          memory_factory: MakeMemory) -> None:
    """After its warm-up, the server moves what is alive out of the garbage collector's view (full
    collections then scan only what requests made); an app built without ``freeze_heap`` leaves it alone."""
    import gc

    assert gc.get_freeze_count() == 0
    config = MindgateConfig.from_dict({})
    plain_memory = memory_factory()
    serve_gateway(create_app(config, chat=llama_chat(UNUSED_UPSTREAM), memory=plain_memory), config)
    deadline = time.monotonic() + 60
    while not plain_memory._opened:  # its warm-up opened the store
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    assert gc.get_freeze_count() == 0
    try:
        serve_gateway(create_app(config, chat=llama_chat(UNUSED_UPSTREAM), memory=memory_factory(),
                                 freeze_heap=True), config)
        while gc.get_freeze_count() == 0:
            assert time.monotonic() < deadline, "the heap was not frozen after the warm-up"
            time.sleep(0.05)
        assert gc.get_freeze_count() > 10_000  # the modules, the app and its parts
    finally:
        gc.unfreeze()


def test_mindgate_serve_builds_the_app_with_a_frozen_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from mindgate.gateway import _app, _server

    built: dict[str, object] = {}
    real = _app.create_app

    def create_app(config: MindgateConfig, **options: object) -> object:
        built.update(options)
        return real(config, chat=llama_chat(UNUSED_UPSTREAM), warm_up=False)

    monkeypatch.setattr(_app, "create_app", create_app)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    _server.serve(MindgateConfig.from_dict({}), port=0)
    assert built == {"freeze_heap": True}
