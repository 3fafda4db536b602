"""The lean HTTP/1.1 client under :class:`~mindgate.providers._upstream.Upstream` for plain-http upstreams,
against real loopback servers (raw asyncio, so each test controls the bytes on the wire): keep-alive reuse,
``Connection: close``, bodies delimited by the end of the connection, gzip, chunked streams, and each kind of
transport failure mapped as :func:`~mindgate.providers._upstream.failure_kind` names it."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from mindgate.providers._upstream import TRANSPORT_ERRORS, Upstream, failure_kind

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server; yields its base URL and the list of connections it accepted (by number)."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", accepted
    finally:
        server.close()


def _upstream(base: str, timeout: float = 5.0) -> Upstream:
    upstream = Upstream(base, headers={"Authorization": "Bearer k"}, timeout=timeout, connect_timeout=2.0)
    assert upstream._lean is not None  # plain http, no proxy: the lean client serves it
    return upstream


def test_keep_alive_reuses_the_connection_and_connection_close_does_not() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _request(reader)
            assert b"POST /v1/chat/completions HTTP/1.1" in request and b"Authorization: Bearer k" in request
            close = b"x-close: 1" in request.lower()
            body = b'{"ok":true}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%b\r\n%b"
                         % (len(body), b"connection: close\r\n" if close else b"", body))
            await writer.drain()
            if close:
                return

    async def run() -> list[int]:
        async with _server(handler) as (base, accepted):
            upstream = _upstream(base)
            for _ in range(3):
                answer = await upstream.request("POST", "/chat/completions", {"a": 1})
                assert answer.status == 200 and answer.body == b'{"ok":true}'
                assert answer.headers["Content-Type"] == "application/json"  # case-insensitive
            await upstream.request("POST", "/chat/completions", {"a": 1}, headers={"X-Close": "1"})
            await upstream.request("POST", "/chat/completions", {"a": 1})
            await upstream.aclose()
            return accepted

    assert asyncio.run(run()) == [0, 1]  # three on one connection, then a new one after the server's close


def test_a_body_until_close_and_a_gzip_body_are_read_whole() -> None:
    payload = b'{"text": "' + b"sea " * 500 + b'"}'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _request(reader)
        if b"/gzip" in request:
            packed = gzip.compress(payload)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%b"
                         % (len(packed), packed))
        else:  # no length, not chunked: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + payload)
        await writer.drain()

    async def run() -> tuple[bytes, bytes]:
        async with _server(handler) as (base, _):
            upstream = _upstream(base)
            plain = (await upstream.request("GET", "/plain")).body
            packed = (await upstream.request("GET", "/gzip")).body
            await upstream.aclose()
            return plain, packed

    assert asyncio.run(run()) == (payload, payload)


def test_a_chunked_stream_arrives_chunk_by_chunk() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%b\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()  # keep the connection open: the client decides

    async def run() -> list[bytes]:
        async with _server(handler) as (base, _):
            upstream = _upstream(base)
            async with upstream.stream("POST", "/chat/completions", {"stream": True}) as response:
                assert response.status == 200
                assert response.headers.get("content-type") == "text/event-stream"
                parts = [chunk async for chunk in response.content.iter_any()]
            await upstream.aclose()
            return parts

    assert asyncio.run(run()) == [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]


def test_a_streamed_body_read_slowly_holds_a_bounded_amount_in_memory() -> None:
    """A fast upstream and a slow reader (a stalled client downstream): the socket pauses above HIGH_WATER,
    so what the client holds stays bounded while every byte still arrives, in order."""
    from mindgate.providers import _http1

    total = 24 * 2**20
    block = bytes(range(256)) * 256  # 64 KiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(total // len(block)):
            writer.write(b"%x\r\n%b\r\n" % (len(block), block))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def run() -> tuple[int, int]:
        async with _server(handler) as (base, _):
            upstream = _upstream(base)
            received, largest = 0, 0
            async with upstream.stream("POST", "/chat/completions", {"stream": True}) as response:
                async for chunk in response.content.iter_any():
                    assert chunk == (block * (len(chunk) // len(block) + 2))[received % len(block):][:len(chunk)]
                    received += len(chunk)
                    largest = max(largest, len(chunk))
                    await asyncio.sleep(0.002)  # the slow reader
            await upstream.aclose()
            return received, largest

    received, largest = asyncio.run(run())
    assert received == total
    assert largest <= _http1.HIGH_WATER + 2**20  # at most one socket read past the mark (without: megabytes)


@pytest.mark.parametrize("case", ["refused", "silent", "cut"])
def test_transport_failures_are_aiohttp_errors_of_the_right_kind(case: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        if case == "cut":  # the head and part of the body, then the connection closes
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\"")
            await writer.drain()
            return
        await asyncio.sleep(5)  # silent

    async def run() -> BaseException:
        async with _server(handler) as (base, _):
            if case == "refused":
                probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
                port = probe.sockets[0].getsockname()[1]
                probe.close()
                await probe.wait_closed()
                base = f"http://127.0.0.1:{port}/v1"  # nothing listens there any more
            upstream = _upstream(base, timeout=0.3)
            try:
                await upstream.request("POST", "/chat/completions", {"a": 1})
            except TRANSPORT_ERRORS as exc:
                return exc
            finally:
                await upstream.aclose()
            raise AssertionError("no error")

    error = asyncio.run(run())
    assert failure_kind(error) == {"refused": "unreachable", "silent": "timeout", "cut": "dropped"}[case]
