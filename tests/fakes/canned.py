"""A CANNED HTTP SERVER: a real HTTP/1.1 server on 127.0.0.1 that answers every request with the same bytes.

Not a vendor fake: it stands for "any server at all" in tests about parsing what an upstream may send
(malformed bodies, odd headers, event streams split in odd places). The answer is set per test
(``server.answer = (status, headers, body)``); ``chunks`` splits the body into separately flushed writes,
so line ends can fall across reads. Every request is read in full (Content-Length) and recorded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CannedServer:
    """Serves ``answer`` on a free loopback port from a daemon thread; keep-alive until ``Connection: close``."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, str], bytes] = (200, {"content-type": "application/json"}, b"{}")
        self.chunks = 1
        self.requests: list[bytes] = []
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canned-http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                status, headers, body = self.answer
                lines = [f"HTTP/1.1 {status} Canned", f"content-length: {len(body)}",
                         *(f"{name}: {value}" for name, value in headers.items())]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace"))
                step = max(1, -(-len(body) // self.chunks))
                for start in range(0, len(body), step):
                    writer.write(body[start:start + step])
                    await writer.drain()
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def start(self) -> CannedServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # the handler's read fails and it returns
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait(tasks, timeout=2) if tasks else None


@contextmanager
def canned_server() -> Iterator[CannedServer]:
    server = CannedServer().start()
    try:
        yield server
    finally:
        server.stop()
