"""Shared pieces of the bench scripts: a raw keep-alive HTTP/1.1 upstream on loopback, and percentiles.

The upstream is deliberately not a framework: it answers in microseconds so that what a bench measures is
mindgate's own cost. It runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

Reply = Callable[[bytes, bytes], bytes]
"""Given a request's head (request line and headers) and body, the whole HTTP response to write."""


def http_response(body: bytes, content_type: bytes = b"application/json") -> bytes:
    """A complete ``200 OK`` HTTP/1.1 response with ``body``."""
    return (b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def start_upstream(reply: Reply) -> int:
    """Start a keep-alive HTTP server on 127.0.0.1 answering every request with ``reply``; its port."""
    ready = threading.Event()
    port: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                writer.write(reply(head, await reader.readexactly(length)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        await server.serve_forever()

    threading.Thread(target=lambda: asyncio.new_event_loop().run_until_complete(serve()), daemon=True).start()
    if not ready.wait(5):
        raise RuntimeError("the loopback upstream did not start within 5 s")
    return port[0]


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
