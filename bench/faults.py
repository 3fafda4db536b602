"""Upstream faults: what a gateway client sees when a routing target misbehaves.

:class:`FaultServer` is a loopback HTTP/1.1 server (raw asyncio, so it can cut, reset and stall
connections at the byte level) that misbehaves on purpose, one behaviour per path prefix
(``/<fault>/v1/chat/completions``); see :data:`FAULTS`. For every fault the gateway serves four chains:

* ``<fault>.complete`` / ``<fault>.stream``: the faulty target first, a healthy one last (fallback);
* ``<fault>.complete.alone`` / ``<fault>.stream.alone``: the faulty target only;

and a ``healthy`` chain (the default), asked once first so that no timing includes loading its model.

The faulty target has a router ``timeout``/``first_token_timeout`` of ``--timeout`` seconds (except
``hang_provider_timeout``, which has none and relies on the provider's own read timeout), one retry,
and a circuit breaker that opens after 3 failures. Each chain gets ``--repeat`` requests; the table shows
the first request's outcome and latency, the last one's latency (the breaker open by then) and what the
client saw: a success (and which model served it), an OpenAI-shaped error (status, code), or, for a
stream cut after its first chunk, an SSE error event before ``[DONE]`` (never a silent truncation).

The healthy target is the in-process engine (SmolLM2 GGUF, no server) unless ``--healthy-url`` names an
OpenAI-compatible server (e.g. a llama.cpp server with model alias ``smollm2``).

Usage: python bench/faults.py [--timeout 2] [--repeat 4] [--healthy-url http://127.0.0.1:PORT/v1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAULTY_MODEL = "faulty-model"

_CHUNK = ('{"id":"chatcmpl-fault","object":"chat.completion.chunk","created":0,"model":"' + FAULTY_MODEL
          + '","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}')

FAULTS: dict[str, str] = {
    "refused": "nothing listens on the port (connection refused)",
    "reset": "accepts, reads the request, resets the connection (RST)",
    "hang": "accepts, reads the request, never answers",
    "hang_provider_timeout": "never answers; the target has no router timeout, only the provider's read timeout",
    "trickle": "answers one byte (or SSE comment) every 0.2 s, forever",
    "garbage_json": "HTTP 200 with a truncated JSON body",
    "wrong_shape": "HTTP 200 with valid JSON that is not a completion",
    "html": "HTTP 200 with an HTML page (a captive portal)",
    "http_429": "HTTP 429 with Retry-After: 1",
    "http_500": "HTTP 500 with an OpenAI-shaped error body",
    "cut_midway": "non-stream: closes after 20 of 500 bytes; stream: closes after 2 chunks, no [DONE]",
    "stall_midway": "non-stream: sends half a body, then stalls; stream: 2 chunks, then stalls",
    "garbage_midway": "stream: 2 good chunks, then an event that is not JSON",
}


# -- the faulty upstream -------------------------------------------------------------------------------


class FaultServer:
    """The misbehaving upstream on 127.0.0.1, served from a daemon thread; ``url(fault)`` is a base URL."""

    def __init__(self) -> None:
        self.port = 0
        self.refused_port = 0
        self.requests: list[tuple[str, str]] = []  # (fault, path) of every request received
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, fault: str) -> str:
        if fault == "refused":
            return f"http://127.0.0.1:{self.refused_port}/v1"
        return f"http://127.0.0.1:{self.port}/{fault}/v1"

    def start(self) -> FaultServer:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self.refused_port = int(sock.getsockname()[1])  # closed again: nothing listens there
        ready = threading.Event()

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
            self.port = int(self._server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fault-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        path = request_line.split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        fault = path.split("/")[1]
        self.requests.append((fault, path))
        if path.endswith("/models"):
            await _respond(writer, 200, json.dumps({"object": "list", "data": [{"id": FAULTY_MODEL}]}).encode())
            return
        stream = bool(json.loads(body or b"{}").get("stream"))
        await BEHAVIOURS[fault](reader, writer, stream)


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, *, content_type: str = "application/json",
                   extra: str = "", length: int | None = None) -> None:
    writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: "
                 f"{len(body) if length is None else length}\r\nConnection: close\r\n{extra}\r\n".encode() + body)
    await writer.drain()


async def _sse_head(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    await writer.drain()


async def _two_chunks(writer: asyncio.StreamWriter) -> None:
    await _sse_head(writer)
    for piece in ("Hel", "lo"):
        writer.write(b"data: " + (_CHUNK % piece).encode() + b"\n\n")
        await writer.drain()
        await asyncio.sleep(0.01)


async def _forever() -> None:
    await asyncio.sleep(3600)


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    await _forever()


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    if stream:
        await _sse_head(writer)
    else:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    while True:
        writer.write(b": keep-alive\n\n" if stream else b" ")
        await writer.drain()
        await asyncio.sleep(0.2)


async def _garbage_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    if stream:
        await _sse_head(writer)
        writer.write(b'data: {"id": "chatcmpl-x", "choices": [{"del\n\n')
        await writer.drain()
        return
    await _respond(writer, 200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"mess')


async def _wrong_shape(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    if stream:
        await _sse_head(writer)
        writer.write(b'data: {"choices": "oops"}\n\ndata: [DONE]\n\n')
        await writer.drain()
        return
    await _respond(writer, 200, b'{"choices": [{"message": "oops"}]}')


async def _html(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    await _respond(writer, 200, b"<html><body>Please log in to the network</body></html>", content_type="text/html")


async def _http_429(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    body = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}'
    await _respond(writer, 429, body, extra="Retry-After: 1\r\n")


async def _http_500(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    await _respond(writer, 500, b'{"error": {"message": "the model crashed", "type": "server_error"}}')


async def _cut_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    if stream:
        await _two_chunks(writer)
    else:
        await _respond(writer, 200, b'{"id": "chatcmpl-x", "ob', length=500)
    writer.transport.abort()


async def _stall_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    if stream:
        await _two_chunks(writer)
    else:
        await _respond(writer, 200, b'{"id": "chatcmpl-x", "ob', length=500)
    await _forever()


async def _garbage_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: bool) -> None:
    if not stream:
        await _garbage_json(reader, writer, stream)
        return
    await _two_chunks(writer)
    writer.write(b"data: {this is not json\n\n")
    await writer.drain()
    await _forever()


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bool], Awaitable[None]]
BEHAVIOURS: dict[str, Behaviour] = {
    "reset": _reset, "hang": _hang, "hang_provider_timeout": _hang, "trickle": _trickle,
    "garbage_json": _garbage_json, "wrong_shape": _wrong_shape, "html": _html, "http_429": _http_429,
    "http_500": _http_500, "cut_midway": _cut_midway, "stall_midway": _stall_midway,
    "garbage_midway": _garbage_midway,
}


# -- the gateway config --------------------------------------------------------------------------------


def chain_names(fault: str) -> list[str]:
    return [f"{fault}.{kind}{alone}" for kind in ("complete", "stream") for alone in ("", ".alone")]


def fault_config(server: FaultServer, healthy: dict[str, Any], *, timeout: float,
                 faults: list[str] | None = None) -> dict[str, Any]:
    """A mindgate config dict with the four chains of every fault (see the module docstring).

    ``healthy`` is the healthy endpoint's config (``{"provider": ..., "config": {...}}``)."""
    providers: dict[str, Any] = {"healthy": healthy}
    chains: dict[str, Any] = {}
    for fault in faults or list(FAULTS):
        bounded = fault != "hang_provider_timeout"
        providers[f"bad_{fault}"] = {"provider": "openai_compatible", "config": {
            "base_url": server.url(fault), "model": FAULTY_MODEL, "connect_timeout": 1.0,
            "timeout": 30.0 if bounded else timeout}}
        bad = {"endpoint": f"bad_{fault}", "name": f"bad_{fault}"}
        if bounded:
            bad.update(timeout=timeout, first_token_timeout=timeout)
        for name in chain_names(fault):
            targets = [bad] if name.endswith(".alone") else [bad, {"endpoint": "healthy", "name": "healthy"}]
            chains[name] = {"targets": targets, "retries": 1, "backoff_base": 0.05, "backoff_max": 0.2,
                            "breaker_failures": 3, "breaker_cooldown": 60}
    chains["healthy"] = {"targets": [{"endpoint": "healthy", "name": "healthy"}]}
    return {"providers": providers, "routing": {"chains": chains, "default": "healthy"}, "gateway": {"memory": False}}


# -- a client's view -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one request got: ``kind`` is ``success``, ``error`` (an HTTP error status) or ``error_event``
    (HTTP 200 whose stream ended with an error event); ``served_by`` is the answering model."""

    status: int
    kind: str
    seconds: float
    served_by: str | None = None
    code: str | None = None
    message: str = ""
    chunks: int = 0
    done: bool = False


def request(http: Any, chain: str, *, stream: bool) -> Outcome:
    """One chat request through the gateway (``http`` is an ``httpx.Client`` on the gateway root)."""
    body = {"model": chain, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4,
            "temperature": 0, "stream": stream}
    start = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = response.read()
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        error = json.loads(raw)["error"]
        return Outcome(response.status_code, "error", seconds, code=error.get("code"), message=error["message"])
    if not stream:
        data = json.loads(raw)
        return Outcome(200, "success", seconds, served_by=data.get("model"))
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    done = bool(events) and events[-1] == "[DONE]"
    decoded = [json.loads(e) for e in events if e != "[DONE]"]
    chunks = [e for e in decoded if "error" not in e]
    errors = [e["error"] for e in decoded if "error" in e]
    served = chunks[0].get("model") if chunks else None
    if errors:
        return Outcome(200, "error_event", seconds, served_by=served, code=errors[-1].get("code"),
                       message=errors[-1].get("message", ""), chunks=len(chunks), done=done)
    return Outcome(200, "success", seconds, served_by=served, chunks=len(chunks), done=done)


@dataclass
class Row:
    fault: str
    chain: str
    first: Outcome
    last: Outcome
    fallback_used: bool
    requests_to_fault: int


def run_faults(base_url: str, server: FaultServer, *, repeat: int = 4, faults: list[str] | None = None,
               warm_up: bool = True) -> list[Row]:
    """Send ``repeat`` requests to every chain of every fault; one :class:`Row` per chain. ``warm_up`` first
    asks the healthy chain once, so that no timing includes loading its model."""
    import httpx

    rows = []
    with httpx.Client(base_url=base_url, timeout=120) as http:
        warm = request(http, "healthy", stream=False) if warm_up else None
        if warm is not None and warm.kind != "success":
            raise RuntimeError(f"the healthy target does not answer: {warm.message}")
        for fault in faults or list(FAULTS):
            for chain in chain_names(fault):
                before = sum(1 for f, p in server.requests if f == fault and not p.endswith("/models"))
                outcomes = [request(http, chain, stream=".stream" in chain) for _ in range(repeat)]
                sent = sum(1 for f, p in server.requests if f == fault and not p.endswith("/models")) - before
                first = outcomes[0]
                rows.append(Row(fault, chain, first, outcomes[-1],
                                fallback_used=first.served_by not in (None, FAULTY_MODEL), requests_to_fault=sent))
    return rows


def describe(outcome: Outcome) -> str:
    if outcome.kind == "success":
        return f"200 ok ({outcome.served_by})"
    if outcome.kind == "error_event":
        return f"200 + {outcome.chunks} chunks + error event {outcome.code}" + (" + [DONE]" if outcome.done else "")
    return f"{outcome.status} {outcome.code}"


def print_table(rows: list[Row]) -> None:
    print(f"{'fault':<22}{'chain':<16}{'first request: outcome':<52}{'latency':>9}{'fallback':>10}"
          f"{'last latency':>14}{'upstream calls':>16}")
    for r in rows:
        chain = r.chain.split(".", 1)[1]
        print(f"{r.fault:<22}{chain:<16}{describe(r.first):<52}{r.first.seconds:>8.2f}s"
              f"{'yes' if r.fallback_used else 'no':>10}{r.last.seconds:>13.2f}s{r.requests_to_fault:>16}")
    print()
    for r in rows:
        if r.first.kind != "success" and r.chain.endswith(".alone"):
            print(f"{r.chain}: {r.first.message[:220]}")


# -- main ----------------------------------------------------------------------------------------------


def serve_in_thread(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    return server, thread, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=2.0, help="the faulty target's router timeout (s)")
    parser.add_argument("--repeat", type=int, default=4, help="requests per chain")
    parser.add_argument("--healthy-url", help="an OpenAI-compatible server serving model `smollm2`")
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    opts = parser.parse_args(argv)
    logging.getLogger("mindgate").setLevel(logging.ERROR)  # the table reports each failure; no log line per request

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from crash import HashEmbedder
    from mindgate.config import MindgateConfig
    from mindgate.gateway._app import create_app
    from mindgate.memory._memory import AsyncMemory
    from mindgate.memory.stores._sqlite import SQLiteStore

    healthy: dict[str, Any] = ({"provider": "openai_compatible", "config": {"base_url": opts.healthy_url,
                                                                            "model": "smollm2"}}
                               if opts.healthy_url else {"provider": "local", "config": {"n_threads": 1}})
    faults = FaultServer().start()
    with tempfile.TemporaryDirectory() as tmp:
        embedder = HashEmbedder()
        memory = AsyncMemory(embedder=embedder, store=SQLiteStore(Path(tmp) / "faults.db"))
        app = create_app(MindgateConfig.from_dict(fault_config(faults, healthy, timeout=opts.timeout)),
                         memory=memory, embedder=embedder, warm_up=False)
        server, thread, port = serve_in_thread(app)
        try:
            started = time.monotonic()
            rows = run_faults(f"http://127.0.0.1:{port}", faults, repeat=opts.repeat)
            seconds = time.monotonic() - started
        finally:
            server.should_exit = True
            thread.join(30)
            faults.stop()
    summary = {"benchmark": "faults", "timeout_s": opts.timeout, "repeat": opts.repeat,
               "healthy": opts.healthy_url or "in-process engine (SmolLM2 GGUF)", "seconds": round(seconds, 1),
               "faults": FAULTS, "rows": [asdict(r) for r in rows]}
    if not opts.json:
        print_table(rows)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
