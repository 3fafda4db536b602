"""Gateway test harness: the gateway served by uvicorn on a free loopback port (a real HTTP server the
official ``openai`` SDK talks to), a recording proxy in front of the real llama.cpp server (so tests see
exactly what the upstream received and sent), and memories over the real MiniLM embedder and SQLite.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from fakes._server import ASGIApp, FakeServer, Receive, Scope, Send
from mindgate.config import MemorySettings, MindgateConfig
from mindgate.gateway._server import uvicorn_config
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import ChatModel, Embedder
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient


class GatewayServer:
    """An ASGI app (the gateway) under uvicorn in a daemon thread, lifespan on, on 127.0.0.1. With
    ``config``, uvicorn runs as ``mindgate serve`` runs it (its timeouts and connection limits)."""

    def __init__(self, app: Any, config: MindgateConfig | None = None) -> None:
        self.app = app
        self.config = config
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def start(self, timeout: float = 60.0) -> GatewayServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        if self.config is not None:
            config = uvicorn_config(self.app, self.config, host="127.0.0.1", port=self.port, log_level="warning",
                                    lifespan="on")
        else:
            config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"gateway-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the gateway did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=60)

    def openai(self, api_key: str = "unused", **kwargs: Any) -> openai.OpenAI:
        """The official SDK pointed at this gateway (no retries, so errors surface as they are)."""
        return openai.OpenAI(base_url=self.v1, api_key=api_key, max_retries=0, timeout=180, **kwargs)

    def http(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=180)


class RecordingProxy(FakeServer):
    """Forwards every request unchanged to a real upstream and records the request (``requests``) and
    the exact response bytes it relayed (``responses``, same order). Not a fake: a wiretap."""

    def __init__(self, upstream_root: str) -> None:
        super().__init__()
        self.upstream_root = upstream_root.rstrip("/")
        self.responses: list[bytes] = []
        self.response_times: list[float] = []

    def build_app(self) -> ASGIApp:
        client = httpx.AsyncClient(base_url=self.upstream_root, timeout=300)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            headers = [(k.decode(), v.decode()) for k, v in scope["headers"]
                       if k.lower() not in (b"host", b"content-length")]
            query = scope.get("query_string", b"").decode()
            url = scope["path"] + (f"?{query}" if query else "")
            index = len(self.responses)
            self.responses.append(b"")
            self.response_times.append(0.0)
            request = client.build_request(scope["method"], url, content=body, headers=headers)
            try:
                upstream = await client.send(request, stream=True)
            except httpx.HTTPError:
                await send({"type": "http.response.start", "status": 502, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            relay = [(k.encode(), v.encode()) for k, v in upstream.headers.items()
                     if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")]
            await send({"type": "http.response.start", "status": upstream.status_code, "headers": relay})
            async for chunk in upstream.aiter_raw():
                self.responses[index] += chunk
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await upstream.aclose()
            self.response_times[index] = time.monotonic()
            await send({"type": "http.response.body", "body": b""})

        return app

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.json for r in self.requests if r.path.endswith("/chat/completions") and r.json]


@pytest.fixture
def llama_proxy(llama_server: Any) -> Iterator[RecordingProxy]:
    """A recording proxy in front of the session's real llama.cpp server."""
    proxy = RecordingProxy(f"http://127.0.0.1:{llama_server.port}")
    proxy.start()
    yield proxy
    proxy.stop()


def llama_chat(base_v1: str, *, timeout: float = 180.0) -> ChatModel:
    """A chat model for the llama.cpp server (or a proxy in front of it), model alias ``smollm2``."""
    return OpenAICompatChatModel(OpenAICompatClient(base_v1, timeout=timeout), "smollm2")


@pytest.fixture
def memory_factory(tmp_path: Path, minilm: Embedder) -> Iterator[Callable[..., AsyncMemory]]:
    """``make(llm=None, **settings)``: an AsyncMemory on the real MiniLM and a fresh SQLite file."""
    stores: list[SQLiteStore] = []

    def make(llm: ChatModel | None = None, **settings: Any) -> AsyncMemory:
        store = SQLiteStore(tmp_path / f"memory-{len(stores)}.db")
        stores.append(store)
        return AsyncMemory(embedder=minilm, store=store, llm=llm, settings=MemorySettings(**settings))

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def serve_gateway() -> Iterator[Callable[[Any], GatewayServer]]:
    """``serve(app, config=None)``: start the gateway app on a free port (as ``mindgate serve`` runs it
    when ``config`` is given); stopped after the test."""
    started: list[GatewayServer] = []

    def serve(app: Any, config: MindgateConfig | None = None) -> GatewayServer:
        server = GatewayServer(app, config).start()
        started.append(server)
        return server

    yield serve
    for server in started:
        server.stop()
