"""A tiny harness that serves an ASGI app on 127.0.0.1 from a daemon thread, for the contract fakes.

Every request is recorded (method, path, JSON body) before the app sees it, so tests can assert on what
reached the "server" (e.g. exactly one load call). Start/stop take milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; ``json`` is None when the body was empty or not JSON."""

    method: str
    path: str
    json: Any = None
    at: float = field(default_factory=time.monotonic)


class FakeServer:
    """Base of the fakes: subclasses implement :meth:`build_app`; ``start()`` serves it on a free port."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def build_app(self) -> ASGIApp:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT`` (no ``/v1``)."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started; call .start() first")
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path equals ``path`` (and method, when given)."""
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def start(self, timeout: float = 10.0) -> FakeServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port or 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self._recording(self.build_app()), log_level="warning", lifespan="off",
                                access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"{type(self).__name__}-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start on port {self.port}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving; ``start()`` again reuses the same port (a restarted server)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _recording(self, app: ASGIApp) -> ASGIApp:
        async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            self.requests.append(RecordedRequest(scope["method"], scope["path"], parsed))
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await app(scope, replay, send)

        return recorder


async def sleep(seconds: float) -> None:
    """``asyncio.sleep`` that does nothing for 0 (fakes use it for simulated load times)."""
    if seconds > 0:
        await asyncio.sleep(seconds)
