"""A lean HTTP/1.1 client for ``http://`` upstreams reached without a proxy (local model servers: llama.cpp,
LM Studio, Ollama, vLLM on this machine or the LAN): the transport :class:`~._upstream.Upstream` uses for
them. TLS and proxies stay on aiohttp.

Every forwarded chat request crosses this code, so it does per request only what such an exchange needs: the
request head is formatted once per header set, written with the body in one ``write``, and the answer is
parsed by httptools (the C parser uvicorn uses) on a kept-alive connection. aiohttp's general client costs
~0.3 ms of CPU per exchange on loopback, this ~0.05 ms (bench/gateway.py, the notes of issue 12).

Contracts are :class:`~._upstream.Upstream`'s, and failures raise the same aiohttp exception types so that
:func:`~._upstream.failure_kind` and :data:`~._upstream.TRANSPORT_ERRORS` hold unchanged:

* connecting: ``aiohttp.ConnectionTimeoutError`` after ``connect_timeout``, ``aiohttp.ClientConnectorError``
  when nothing listens;
* each wait for bytes (the head, each body chunk): ``aiohttp.SocketTimeoutError`` after ``timeout``;
* a connection that closes before its answer is complete: ``aiohttp.ServerDisconnectedError``; bytes that
  are not HTTP: ``aiohttp.ClientPayloadError``.

Connections: at most ``limit`` at once per pool (more requests wait, as with aiohttp's connector), idle ones
kept ``keepalive`` seconds (under the servers' own idle close) and reused last-in first-out; a connection
whose answer was not read to its end, or that the server marked ``Connection: close``, is closed. Bodies
sent with ``Content-Encoding`` gzip or deflate are decoded (the client asks for none). A body read as a
stream (``iter_any``) holds at most about :data:`HIGH_WATER` bytes that the caller has not taken: beyond
that, reading from the socket pauses until the caller takes them (a slow client downstream slows the
upstream, through TCP, instead of filling memory); a body read whole is not bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httptools
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict

_USER_AGENT = "mindgate"
_HEAD_CACHE = 64
HIGH_WATER = 256 * 1024  # bytes of a streamed body held before reading from the socket pauses


class Response:
    """One answer as it arrives: ``status``, ``headers`` (case-insensitive), :meth:`read` for the whole body,
    ``content.iter_any()`` for its chunks as they come (the names aiohttp's response has)."""

    def __init__(self, connection: Connection, read_timeout: float | None) -> None:
        self.connection = connection
        self.read_timeout = read_timeout
        self.status = 0
        self._headers: CIMultiDict[str] | None = None
        self.content = self
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._held = 0  # bytes in _chunks
        self._streaming = False  # read by iter_any: the socket pauses above HIGH_WATER
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None

    # -- fed by the connection --------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def headers(self) -> CIMultiDict[str]:
        """The response headers (decoded when first asked for: a successful call rarely reads them)."""
        if self._headers is None:
            self._headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw_headers)
        return self._headers

    def _head(self, status: int) -> None:
        self.status = status
        for name, value in self._raw_headers:
            if name.lower() == b"content-encoding":
                encoding = value.strip().lower()
                if encoding in (b"gzip", b"x-gzip", b"deflate"):
                    self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if b"gzip" in encoding
                                                       else zlib.MAX_WBITS)
        self.head_done = True
        self._wake()

    def _body(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                self._fail(aiohttp.ClientPayloadError(f"cannot decode the response body: {exc}"))
                return
        if data:
            self._chunks.append(data)
            self._held += len(data)
            if self._streaming and not self._paused and self._held > HIGH_WATER:
                self._paused = self.connection.pause_reading()
            self._wake()

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self.complete = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self.error is None and not self.complete:
            self.error = error
            self._wake()

    # -- read by the caller -----------------------------------------------------------------------------

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if self.read_timeout is None else loop.call_later(self.read_timeout, self._timed_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self.error is not None:
            raise self.error

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(aiohttp.SocketTimeoutError(f"no answer within {self.read_timeout}s"))

    async def _start(self) -> None:
        while not self.head_done:
            await self._wait()

    async def read(self) -> bytes:
        """The whole body."""
        while not self.complete:
            await self._wait()
        body = b"".join(self._chunks)
        self._taken()
        return body

    def _taken(self) -> None:
        self._chunks.clear()
        self._held = 0
        if self._paused:
            self._paused = False
            self.connection.resume_reading()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (what has arrived since the last chunk, joined)."""
        self._streaming = True
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._taken()
                yield data
            elif self.complete:
                return
            else:
                await self._wait()


class LazyHeaders(Mapping[str, str]):
    """A response's headers, decoded only if someone reads them (case-insensitive)."""

    __slots__ = ("response",)

    def __init__(self, response: Response) -> None:
        self.response = response

    def __getitem__(self, name: str) -> str:
        return self.response.headers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.response.headers)

    def __len__(self) -> int:
        return len(self.response.headers)


class Connection(asyncio.Protocol):
    """One kept-alive connection; ``response`` is the answer being received (None while idle)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (a test's socket pair)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.response._fail(aiohttp.ClientPayloadError(f"malformed HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if response.head_done and _until_close(response.headers):
                response._finish()  # a body delimited by the end of the connection
            else:
                response._fail(aiohttp.ServerDisconnectedError())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> bool:
        """Stop reading from the socket (True when it was paused)."""
        if self.transport is None or self.closed:
            return False
        self.transport.pause_reading()
        return True

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response.keep_alive = self.parser.should_keep_alive()  # asked after the body, it is reset
            self.response._head(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._body(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response._finish()


def _until_close(headers: Mapping[str, str]) -> bool:
    return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()


class Pool:
    """Kept-alive connections to one ``host:port`` on one event loop (see the module docstring)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float | None, keepalive: float,
                 limit: int = 256) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(limit)

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(Connection, self.host, self.port)
        except TimeoutError:
            raise aiohttp.ConnectionTimeoutError(
                f"Connection timeout to host http://{self.host}:{self.port}") from None
        except OSError as exc:
            key = ConnectionKey(self.host, self.port, False, True, None, None, None)
            raise aiohttp.ClientConnectorError(key, exc) from None
        return connection

    async def acquire(self) -> Connection:
        await self.slots.acquire()
        now = asyncio.get_running_loop().time()
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive:
                return connection
            connection.close()
        try:
            return await self._connect()
        except BaseException:
            self.slots.release()
            raise

    def release(self, connection: Connection, *, reusable: bool) -> None:
        connection.response = None
        if reusable and not connection.closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self.idle.append(connection)
        else:
            connection.close()
        self.slots.release()

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class Client:
    """Requests to one ``http://host:port`` with fixed ``headers`` (see the module docstring); one pool per
    event loop."""

    def __init__(self, host: str, port: int, *, headers: Mapping[str, str], connect_timeout: float | None,
                 keepalive: float) -> None:
        self.host, self.port = host, port
        self.authority = host if port == 80 else f"{host}:{port}"
        if ":" in host:  # an IPv6 literal
            self.authority = f"[{host}]" if port == 80 else f"[{host}]:{port}"
        self.headers = {"User-Agent": _USER_AGENT, **headers}
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.pools: dict[asyncio.AbstractEventLoop, Pool] = {}
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes] = {}

    def pool(self) -> Pool:
        loop = asyncio.get_running_loop()
        pool = self.pools.get(loop)
        if pool is None:
            for stale in [lp for lp in self.pools if lp.is_closed()]:
                del self.pools[stale]
            pool = self.pools[loop] = Pool(self.host, self.port, connect_timeout=self.connect_timeout,
                                           keepalive=self.keepalive)
        return pool

    def _head(self, method: str, target: str, headers: Mapping[str, str] | None) -> bytes:
        """The request line and headers (without Content-Length and the blank line), built once per set."""
        extra = tuple(headers.items()) if headers else ()
        key = (method, target, extra)
        head = self._heads.get(key)
        if head is None:
            merged = {k.lower(): (k, v) for k, v in self.headers.items()}
            merged.update((k.lower(), (k, v)) for k, v in extra)
            merged.pop("host", None)
            lines = [f"{method} {target} HTTP/1.1", f"Host: {self.authority}",
                     *(f"{k}: {v}" for k, v in merged.values())]
            for line in lines:
                if "\r" in line or "\n" in line:
                    raise ValueError(f"a line break in a request header: {line[:60]!r}")
            head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
            if len(self._heads) >= _HEAD_CACHE:
                self._heads.clear()
            self._heads[key] = head
        return head

    @asynccontextmanager
    async def exchange(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str] | None,
                       read_timeout: float | None) -> AsyncIterator[Response]:
        """Send the request and hold its response open (its head read); leaving the block gives the connection
        back to the pool when the body was read to its end, else closes it."""
        pool = self.pool()
        connection = await pool.acquire()
        reusable = False
        try:
            response = self._send(connection, method, target, body, headers, read_timeout)
            await response._start()
            yield response
            reusable = response.complete and response.error is None and response.keep_alive
        finally:
            pool.release(connection, reusable=reusable)

    async def fetch(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str] | None,
                    read_timeout: float | None) -> tuple[Response, bytes]:
        """:meth:`exchange` with the whole body read: the response and its body (one coroutine, no context
        manager, for the calls that read the whole answer)."""
        pool = self.pool()
        connection = await pool.acquire()
        reusable = False
        try:
            response = self._send(connection, method, target, body, headers, read_timeout)
            data = await response.read()
            reusable = response.complete and response.error is None and response.keep_alive
            return response, data
        finally:
            pool.release(connection, reusable=reusable)

    def _send(self, connection: Connection, method: str, target: str, body: bytes | None,
              headers: Mapping[str, str] | None, read_timeout: float | None) -> Response:
        """Write the request on ``connection``; the response it will read."""
        head = self._head(method, target, headers)
        response = connection.response = Response(connection, read_timeout)
        if body is None:
            message = head + (b"Content-Length: 0\r\n\r\n" if method in ("POST", "PUT", "PATCH") else b"\r\n")
        else:
            message = b"%bContent-Length: %d\r\n\r\n%b" % (head, len(body), body)
        assert connection.transport is not None
        connection.transport.write(message)
        return response
