"""Pooled HTTP/1.1 to one upstream model server: the transport under :class:`~.openai_compat.OpenAICompatClient`.

Every chat, completion and embedding request the gateway forwards crosses this module, so it is built for
CPU per request: for a plain ``http://`` server reached without a proxy (local model servers), the lean
client of :mod:`._http1` (~0.14 ms of CPU per call on loopback); for ``https://`` or through a proxy,
aiohttp's client (~0.3 ms; httpx/httpcore/anyio cost ~1.0-1.3 ms). One connection pool per event loop,
bodies encoded and decoded with orjson (:mod:`mindgate._json`), URLs parsed once per path, no cookie jar (a
gateway must not carry one user's upstream cookies into another's request). Management requests
(``mindgate models``) stay on httpx: they are rare and use its mounts.

Contracts:

* :meth:`Upstream.request` returns status, headers and the whole body; :meth:`Upstream.stream` yields the
  open response for :func:`lines` / :func:`sse_events`. Neither interprets the status.
* Failures to connect, send or receive raise :data:`TRANSPORT_ERRORS`; :func:`failure_kind` says which kind
  (``connect_timeout``, ``timeout``, ``unreachable``, ``dropped``) so the caller can word the error.
* Timeouts have httpx's meaning: ``connect_timeout`` bounds connecting, ``timeout`` bounds each wait for
  bytes (not the whole answer: a long stream that keeps sending never times out).
* Proxies: one proxy URL per upstream, chosen from mem0's ``http_client_proxies`` routes the way httpx
  matches mount patterns (:func:`proxy_for`); otherwise the environment's ``HTTP(S)_PROXY``/``NO_PROXY``,
  read once (aiohttp's own ``trust_env`` would look them and ``.netrc`` up in a thread on every request).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import urllib.request
import warnings
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode, urlsplit

import aiohttp
import certifi
from yarl import URL

from mindgate._json import dumps
from mindgate.providers._http1 import Client, LazyHeaders, Response

TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
"""What :class:`Upstream` raises when the exchange itself fails (no HTTP status to speak of)."""

FailureKind = Literal["connect_timeout", "timeout", "unreachable", "dropped"]

Streamed = aiohttp.ClientResponse | Response
"""An open streamed response: aiohttp's, or the lean client's (:mod:`._http1`) for plain-http upstreams."""

_JSON_BODY = {"Content-Type": "application/json"}
_KEEPALIVE_S = 4.0  # under the 5 s idle close of uvicorn, llama.cpp's server and most others


def failure_kind(exc: BaseException) -> FailureKind:
    """Which way an exchange failed: connecting timed out, an answer timed out, nothing listens (or the proxy
    does not), or the connection broke (reset, closed early, malformed HTTP)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "unreachable"
    return "dropped"


@dataclass(frozen=True)
class Answer:
    """A finished exchange: the status, the headers (case-insensitive) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def proxy_for(url: str, routes: Mapping[str, str]) -> str | None:
    """The proxy for requests to ``url`` out of ``routes`` (httpx mount patterns -> proxy URL: ``all://``,
    ``https://``, ``all://host``, ``all://*.domain``, ``all://*domain``, ``http://host:port``); the most
    specific match wins (a port, then a longer host, then a scheme), as in httpx."""
    target = urlsplit(url)
    best: tuple[bool, int, int] | None = None
    chosen = None
    for pattern, proxy in routes.items():
        scheme, _, rest = pattern.partition("://")
        host, _, port = rest.partition(":")
        if scheme not in ("all", target.scheme) or (port and port != str(target.port or "")):
            continue
        name = target.hostname or ""
        if host.startswith("*."):
            matched = name.endswith(host[1:])
        elif host.startswith("*"):
            matched = name == host[1:] or name.endswith("." + host[1:])
        else:
            matched = not host or name == host
        rank = (bool(port), len(host), len(scheme) if scheme != "all" else 0)
        if matched and (best is None or rank > best):
            best, chosen = rank, proxy
    return chosen


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY``, unless
    ``NO_PROXY`` covers its host), read once per upstream as httpx does, not per request."""
    target = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass(target.hostname or ""):
        return None
    proxy = proxies.get(target.scheme) or proxies.get("all")
    return proxy if proxy and proxy.startswith(("http://", "https://")) else None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # loading a CA bundle takes tens of milliseconds: once per process, shared by every pool;
    # certifi's bundle (or SSL_CERT_FILE), as httpx verifies: the same servers are trusted as before
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


class _Pool(aiohttp.TCPConnector):
    """aiohttp's connection pool, quiet when it is collected after its event loop has ended (code that runs
    each call under its own ``asyncio.run``): nothing can be closed on a finished loop, and its sockets are
    closed when collected. Collected on a live loop it reports a leak as aiohttp does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.home = asyncio.get_running_loop()

    def __del__(self, _warnings: Any = warnings) -> None:
        if not self.home.is_closed():
            super().__del__(_warnings)


def _release(sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession], lean: Client | None) -> None:
    """Close the pools of an :class:`Upstream` that was dropped without ``aclose()`` (or is still open at
    exit): on a running loop the close is scheduled there (and waited for, up to a second, from another
    thread); a pool whose loop has ended is only marked closed."""
    for loop, pool in list(lean.pools.items()) if lean is not None else []:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(pool.close)
    for loop, session in list(sessions.items()):
        if session.closed:
            continue
        if loop.is_closed() or not loop.is_running():
            session.detach()
            continue
        future = asyncio.run_coroutine_threadsafe(session.close(), loop)
        try:
            same_thread = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_thread = False
        if not same_thread:
            with contextlib.suppress(Exception):
                future.result(timeout=1.0)


class Upstream:
    """Pooled access to the server at ``base_url``: requests go to ``base_url + path`` with ``params`` in the
    query and ``headers`` on every request; one aiohttp session (connection pool) per event loop."""

    def __init__(self, base_url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None,
                 timeout: float, connect_timeout: float, proxy: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.query = urlencode(dict(params or {}))
        self.timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect_timeout,
                                             sock_read=timeout)
        self.proxy = proxy or env_proxy(self.base_url)
        self._urls: dict[str, URL] = {}
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._lean: Client | None = None
        target = URL(self.base_url)
        if target.scheme == "http" and not self.proxy and target.host:
            self._lean = Client(target.host, target.port or 80, headers=self.headers,
                                connect_timeout=connect_timeout, keepalive=_KEEPALIVE_S)
        weakref.finalize(self, _release, self._sessions, self._lean)

    def url(self, path: str) -> URL:
        """``base_url + path`` (plus the query), parsed once per path."""
        url = self._urls.get(path)
        if url is None:
            full = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
            if self.query:
                full += ("&" if "?" in full else "?") + self.query
            url = self._urls[path] = URL(full)
        return url

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            for stale in [lp for lp in self._sessions if lp.is_closed()]:
                # its loop is gone, so its sockets cannot be closed on it any more; marking the session
                # closed keeps aiohttp from reporting it as leaked when it is collected
                self._sessions.pop(stale).detach()
            tls = self.base_url.startswith("https:") or (self.proxy or "").startswith("https:")
            connector = _Pool(limit=256, keepalive_timeout=_KEEPALIVE_S, ssl=_ssl_context() if tls else True)
            session = aiohttp.ClientSession(connector=connector, headers=self.headers, timeout=self.timeout,
                                            cookie_jar=aiohttp.DummyCookieJar())
            self._sessions[loop] = session
        return session

    def _send_args(self, body: Any, headers: Mapping[str, str] | None, timeout: float | None) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if body is not None:
            args["data"] = body if isinstance(body, bytes) else dumps(body)
            args["headers"] = {**_JSON_BODY, **headers} if headers else _JSON_BODY
        elif headers:
            args["headers"] = headers
        if self.proxy:
            args["proxy"] = self.proxy
        if timeout is not None:
            args["timeout"] = aiohttp.ClientTimeout(total=None, connect=None, sock_read=timeout,
                                                    sock_connect=self.timeout.sock_connect)
        return args

    def _lean_for(self, path: str) -> Client | None:
        """The lean client when it serves ``path`` (a path under the plain-http base URL, not an absolute URL)."""
        return None if path.startswith(("http://", "https://")) else self._lean

    def _lean_args(self, path: str, body: Any, headers: Mapping[str, str] | None
                   ) -> tuple[str, bytes | None, Mapping[str, str] | None]:
        """The request target, body bytes and per-request headers for the lean client."""
        data = None if body is None else body if isinstance(body, bytes) else dumps(body)
        if data is not None:
            headers = {**_JSON_BODY, **headers} if headers else _JSON_BODY
        return self.url(path).raw_path_qs, data, headers

    async def request(self, method: str, path: str, body: Any = None, *,
                      headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Answer:
        """Send ``body`` (JSON-encoded unless it is bytes already) and read the whole answer."""
        if (lean := self._lean_for(path)) is not None:
            target, data, sent = self._lean_args(path, body, headers)
            answer, whole = await lean.fetch(method, target, data, sent,
                                             self.timeout.sock_read if timeout is None else timeout)
            return Answer(answer.status, LazyHeaders(answer), whole)
        async with self._session().request(method, self.url(path),
                                           **self._send_args(body, headers, timeout)) as response:
            data = await response.read()
            return Answer(response.status, response.headers, data)

    def stream(self, method: str, path: str, body: Any = None, *,
               headers: Mapping[str, str] | None = None) -> AbstractAsyncContextManager[Streamed]:
        """The open response, its body not yet read (``status``, ``headers``, ``read()``,
        ``content.iter_any()``); leaving the block releases the connection (back to the pool when the body
        was read to the end)."""
        if (lean := self._lean_for(path)) is not None:
            target, data, sent = self._lean_args(path, body, headers)
            return lean.exchange(method, target, data, sent, self.timeout.sock_read)
        return self._aiohttp_stream(method, path, body, headers)

    @asynccontextmanager
    async def _aiohttp_stream(self, method: str, path: str, body: Any,
                              headers: Mapping[str, str] | None) -> AsyncIterator[Streamed]:
        async with self._session().request(method, self.url(path),
                                           **self._send_args(body, headers, None)) as response:
            yield response

    async def aclose(self) -> None:
        """Close the current event loop's pool (the others close with their loops)."""
        loop = asyncio.get_running_loop()
        if self._lean is not None:
            pool = self._lean.pools.pop(loop, None)
            if pool is not None:
                pool.close()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()


class _Lines:
    """Splits a body into lines as its chunks arrive (without their ends; a line ends at CRLF, LF or a lone
    CR, as event streams may)."""

    __slots__ = ("buffer", "held")

    def __init__(self) -> None:
        self.buffer = b""
        self.held = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes."""
        buffer = self.buffer + chunk if self.buffer else chunk
        held = False
        if b"\r" in buffer:
            held = buffer.endswith(b"\r")  # perhaps the first half of a CRLF: decide with the next chunk
            buffer = (buffer[:-1] if held else buffer).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *complete, buffer = buffer.split(b"\n")
        self.buffer = buffer + b"\r" if held else buffer
        return complete

    def end(self) -> list[bytes]:
        """The last line, when the body did not end with a line end."""
        return [self.buffer.removesuffix(b"\r")] if self.buffer else []


async def lines(response: Streamed) -> AsyncIterator[bytes]:
    """The body's lines without their ends; a line ends at CRLF, LF or a lone CR (as event streams may)."""
    splitter = _Lines()
    async for chunk in response.content.iter_any():
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.end():
        yield line


class Event(NamedTuple):
    """One server-sent event: its ``event`` name (``message`` when unnamed) and ``data`` (lines joined)."""

    event: str
    data: str


class _Events:
    """The server-sent event parser of :func:`sse_events`, fed line by line."""

    __slots__ = ("data", "name")

    def __init__(self) -> None:
        self.name = ""
        self.data: list[str] = []

    def line(self, raw: bytes) -> Event | None:
        """Take one line; the event it dispatches, if any."""
        if not raw:
            data, name = self.data, self.name
            self.name, self.data = "", []
            if not data:
                return None
            return Event(name or "message", data[0] if len(data) == 1 else "\n".join(data))
        if raw.startswith(b"data: "):  # the usual line, taken without the general parse below
            self.data.append(raw[6:].decode("utf-8", "replace"))
            return None
        line = raw.decode("utf-8", "replace")
        field, colon, value = line.partition(":")
        if not field and colon:
            return None  # a comment (keep-alive)
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self.data.append(value)
        elif field == "event":
            self.name = value
        return None


class SSEParser:
    """The server-sent event parser of :func:`sse_events`, fed by hand: :meth:`feed` takes a chunk of the
    body and returns the events it completes, :meth:`end` those the end of the body completes."""

    __slots__ = ("_events", "_lines")

    def __init__(self) -> None:
        self._lines = _Lines()
        self._events = _Events()

    def _dispatched(self, raw_lines: list[bytes]) -> list[Event]:
        out = []
        for raw in raw_lines:
            event = self._events.line(raw)
            if event is not None:
                out.append(event)
        return out

    def feed(self, chunk: bytes) -> list[Event]:
        return self._dispatched(self._lines.feed(chunk))

    def end(self) -> list[Event]:
        """A held lone CR ending the body is the blank line that dispatches the last event; an event left
        unfinished is dropped."""
        return self._dispatched(self._lines.end())


async def sse_events(response: Streamed) -> AsyncIterator[Event]:
    """The server-sent events of a ``text/event-stream`` body, parsed as the HTML standard says: ``data``
    fields of one event are joined with newlines, a space after the colon is dropped, comments (``:``) and
    unknown fields are ignored, a blank line dispatches, an event with no data is not dispatched, and an
    event left unfinished when the body ends is dropped. Lines are split as :func:`lines` splits them; the
    events of one network read are parsed in one go."""
    parser = SSEParser()
    async for chunk in response.content.iter_any():
        for event in parser.feed(chunk):
            yield event
    for event in parser.end():
        yield event
