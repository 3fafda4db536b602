"""Small real servers on loopback for the routing tests (not fakes of any vendor).

* :class:`ScriptedServer` -- an OpenAI-shaped HTTP server whose ``/v1/chat/completions`` answers follow a
  script (e.g. 429 with ``Retry-After``, then 200), recording every request with its arrival time.
* :class:`HangingServer` -- a socket that listens but never accepts: connections complete (the kernel
  queues them) and requests are sent, but no byte ever comes back, as with a wedged server.
* :func:`closed_port_url` -- a URL where nothing listens (connection refused).
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes._openai import OpenAISurface
from fakes._server import FakeServer
from fixtures_servers import free_port
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient


@dataclass
class Step:
    """One scripted answer: ``status`` with ``headers`` and a JSON ``body`` (an OpenAI error body by default);
    status 200 means a normal completion."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


class ScriptedServer(OpenAISurface, FakeServer):
    """Answers chat requests with the next :class:`Step` of ``script``; when the script is used up, with
    normal completions (``reply``, default "scripted ok")."""

    def __init__(self, *steps: Step, reply: str = "scripted ok") -> None:
        FakeServer.__init__(self)
        self._init_surface()
        self.reply = reply
        self.script: deque[Step] = deque(steps)

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"]),
                                 Route("/v1/models", self._models, methods=["GET"])])

    def start(self, timeout: float = 10.0) -> ScriptedServer:
        super().start(timeout)
        return self

    @property
    def chat_requests(self) -> int:
        return len(self.requests_to("/v1/chat/completions"))

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        step = self.script.popleft() if self.script else Step()
        if step.status == 200:
            return self.chat_response(body, "scripted")
        payload = step.body or {"error": {"message": f"scripted HTTP {step.status}", "type": "server_error",
                                          "param": None, "code": None}}
        return JSONResponse(payload, status_code=step.status, headers=step.headers)


class HangingServer:
    """Listens on a loopback port and never answers anything."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.sock.close()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def chat_model(base_url: str, model: str = "smollm2", *, connect_timeout: float = 1.0,
               timeout: float = 60.0) -> OpenAICompatChatModel:
    """A plain OpenAI-compatible chat model on ``base_url`` (ending in /v1)."""
    client = OpenAICompatClient(base_url, connect_timeout=connect_timeout, timeout=timeout)
    return OpenAICompatChatModel(client, model)
