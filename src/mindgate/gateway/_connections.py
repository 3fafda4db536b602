"""Connection limits uvicorn does not have: a header timeout and a bound on open connections.

:func:`protocol_class` makes a subclass of uvicorn's httptools protocol that

* gives every connection ``header_timeout_s`` from its opening (or from the first byte of each later
  request on a kept-alive connection) to complete a request's headers; a connection that does not (it
  connected and sent nothing, or trickles its headers) gets a 408 and is closed;
* answers a request arriving while more than ``max_connections`` connections are open with a 503 in
  OpenAI's error shape with ``Retry-After`` and ``Connection: close`` (instead of uvicorn's plain-text
  503 without a hint).

Idle keep-alive is uvicorn's own ``timeout_keep_alive``; the body's deadline is the guard's
(:mod:`.guard`), because only the app knows whether it will read the body at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mindgate.gateway._responses import error_body, error_response

log = logging.getLogger("mindgate.gateway")


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(error_body(f"the request headers did not arrive within {seconds:g}s",
                                 error_type="invalid_request_error", code="request_timeout")).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def overloaded_app(max_connections: int, retry_after: int) -> Any:
    """The ASGI app that answers requests beyond the connection bound."""
    response = error_response(503, f"the gateway has reached its limit of {max_connections} open connections",
                              code="server_overloaded",
                              headers={"Retry-After": str(retry_after), "Connection": "close"})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await response(scope, receive, send)

    return app


class _Coalescing:
    """A connection's transport whose writes made in one step of the event loop leave in one ``send``: a
    response's head (written on ``http.response.start``) and its body (written on the next ASGI message,
    in the same step for every response that is not a stream) reach the client as one segment, one
    system call and one wake-up of the client instead of two. What is written goes out at the end of the
    step at the latest, and at once when the response is complete (:meth:`GuardedHttpToolsProtocol
    .on_response_complete`); closing sends it first; everything else is the transport's own."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        """Send what was written so far (the pending ``call_soon`` then finds nothing to send)."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a connection bound (set by
    :func:`protocol_class`)."""

    header_timeout_s: float = 10.0
    max_connections: int = 512
    overloaded: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("closing a connection from %s: no complete request headers within %.1fs",
                     self.client[0] if self.client else "?", self.header_timeout_s)
            self.transport.write(_timeout_response(self.header_timeout_s))
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalescing(transport, self.loop)  # type: ignore[assignment]
        self._arm()

    def on_response_complete(self) -> None:
        # the last byte leaves now, before the rest of the request's task step (the access-log line,
        # metrics, background work) runs: that work is off the time the client waits for
        transport = self.transport
        if isinstance(transport, _Coalescing):
            transport.flush()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        if len(self.connections) <= self.max_connections:
            super().on_headers_complete()
            return
        log.warning("%d connections open (limit %d): answering 503", len(self.connections), self.max_connections)
        app, self.app = self.app, self.overloaded
        try:
            super().on_headers_complete()  # starts the request's task with self.app as it is now
        finally:
            self.app = app


def protocol_class(*, header_timeout_s: float, max_connections: int,
                   retry_after: int = 1) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("MindgateHttpProtocol", (GuardedHttpToolsProtocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections,
                 "overloaded": staticmethod(overloaded_app(max_connections, retry_after))})
