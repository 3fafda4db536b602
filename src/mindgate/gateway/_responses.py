"""Every error the gateway sends is OpenAI's error body with the right status.

:func:`install_error_handlers` maps :class:`~mindgate.errors.MindgateError` (its ``http_status`` and
``to_openai()``), FastAPI's validation errors (400, not FastAPI's 422 body), Starlette's HTTP errors
(unknown route 404, wrong method 405) and anything unexpected (500, logged with the request id; bad input
never lands here because it is validated first).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from mindgate._json import dumps
from mindgate.errors import (
    AuthenticationError,
    MindgateError,
    ProviderError,
    RateLimitError,
    RoutingError,
    StoreError,
    StructuredOutputError,
    TooManyRequestsError,
)
from mindgate.providers._http_errors import json_or_none

log = logging.getLogger("mindgate.gateway")

_HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("invalid_request_error", "request_timeout"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("server_error", "server_overloaded"),
}


_CALLER_STATUSES = frozenset({400, 404, 413, 422})


class JSONBytes(Response):
    """A JSON response rendered with compact separators (no pretty-printing, no re-validation)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return dumps(content)


class LastFrame(bytes):
    """A source's last frame for :class:`EventStream`: the response ends with it at once, and what the source
    still runs afterwards (closing the upstream, usage, memory writes) runs after the client has the whole
    answer. Anything the source yields after it is dropped."""

    __slots__ = ()


class EventStream(Response):
    """A ``text/event-stream`` response that stops pulling from ``source`` (closing it, so its cleanup runs)
    as soon as the client disconnects. Lighter than Starlette's StreamingResponse: plain asyncio tasks
    instead of an anyio task group.

    Frames that are ready together go out in one write: one task pulls ``source`` into a buffer, another
    sends what the buffer holds whenever it gets to run, so frames the upstream sent in one read (a fast
    upstream, or a burst) cost one write and one wake-up of the client instead of one each, while a frame
    that arrives alone still goes out at once. The buffer is bounded (``BUFFERED`` frames): a client that
    does not read stops the pulling, as a direct relay would. A :class:`LastFrame` ends the response as soon
    as it is sent; the source's own cleanup then runs to its end (its errors logged), the client no longer
    waiting for it."""

    media_type = "text/event-stream"
    BUFFERED = 64

    def __init__(self, source: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        buffer: list[bytes] = []
        ready, room = asyncio.Event(), asyncio.Event()
        ended = failed = final = delivered = False

        async def pump() -> None:
            nonlocal ended, failed, final
            try:
                async for chunk in self.source:
                    if final:
                        continue  # after the last frame: the source's cleanup, nothing more to send
                    buffer.append(chunk)
                    ready.set()
                    if type(chunk) is LastFrame:
                        final = True
                        await asyncio.sleep(0)  # delivery sends it before the source's cleanup runs
                    elif len(buffer) >= self.BUFFERED:
                        room.clear()
                        await room.wait()
            except BaseException:
                failed = True  # the response is not ended cleanly: the client sees a cut, not a false end
                raise
            finally:
                ended = True
                ready.set()
                aclose = getattr(self.source, "aclose", None)
                if aclose is not None:
                    await aclose()

        async def deliver() -> None:
            nonlocal delivered
            while True:
                if not buffer:
                    if ended:
                        break
                    ready.clear()
                    await ready.wait()
                    continue
                body = b"".join(buffer)
                last = final or (ended and not failed)  # the end goes out with the last frames
                buffer.clear()
                room.set()
                await send({"type": "http.response.body", "body": body, "more_body": not last})
                if last:
                    delivered = True
                    return
            if not failed:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        def stop(_: object) -> None:
            if not delivered:  # the client left before the end: stop pulling
                producer.cancel()

        producer = asyncio.ensure_future(pump())
        watch = asyncio.ensure_future(self._watch(receive))
        watch.add_done_callback(stop)
        try:
            await deliver()
        finally:
            if not delivered:
                producer.cancel()
            watch.cancel()
            await asyncio.gather(producer, watch, return_exceptions=True)
        if not producer.cancelled() and producer.exception() is not None:
            if not delivered:
                raise producer.exception()  # type: ignore[misc]
            log.error("a stream's cleanup after its last frame failed", exc_info=producer.exception())
        if self.background is not None:
            await self.background()

    @staticmethod
    async def _watch(receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


def error_body(message: str, *, error_type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONBytes:
    """An OpenAI-shaped error for an HTTP status (type and default code derived from the status)."""
    error_type, default_code = _HTTP_ERRORS.get(status, ("server_error" if status >= 500 else
                                                         "invalid_request_error", None))
    return JSONBytes(error_body(message, error_type=error_type, code=code or default_code, param=param),
                     status_code=status, headers=dict(headers or {}))


def status_of(exc: MindgateError) -> tuple[int, dict[str, Any]]:
    """The status and body the gateway's client gets for ``exc``.

    An upstream's 4xx that is the caller's doing (a prompt over the context, a schema the server
    rejects) is a 400 for the caller, not a 502; an upstream rejecting the *gateway's* credentials is a
    502 (the caller's own key is fine; the gateway's configuration is not)."""
    body = exc.to_openai()
    if isinstance(exc, ProviderError):
        if isinstance(exc, AuthenticationError):
            body["error"].update(type="api_error", code="upstream_authentication_failed")
            return 502, body
        if type(exc) in (ProviderError, StructuredOutputError) and exc.status_code in _CALLER_STATUSES:
            body["error"].update(type="invalid_request_error", code="upstream_rejected_request",
                                 param=upstream_param(exc.body))
            return 400, body
    return exc.http_status, body


def upstream_param(body: str | None) -> str | None:
    """The request parameter an upstream's OpenAI-shaped error names (``error.param``), if any."""
    data = json_or_none(body) if body else None
    error = data.get("error") if isinstance(data, dict) else None
    param = error.get("param") if isinstance(error, dict) else None
    return param if isinstance(param, str) else None


def mindgate_error_response(exc: MindgateError) -> JSONBytes:
    headers: dict[str, str] = {}
    retry_after = (getattr(exc, "retry_after", None)
                   if isinstance(exc, RateLimitError | RoutingError | TooManyRequestsError) else None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    status, body = status_of(exc)
    return JSONBytes(body, status_code=status, headers=headers)


def store_error_response(exc: StoreError, request_id: str | None) -> JSONBytes:
    """A store failure as the client sees it: what failed (a read or a write) and the request id, never
    the store's path or the driver's message; those go to the log with the request id."""
    log.error("memory store error in request %s: %s", request_id, exc)
    operation = {"read": "a read", "write": "a write", "open": "opening the store"}.get(exc.operation or "",
                                                                                       "a store operation")
    hint = "nothing was changed; retry, and report it with the request id if it repeats" \
        if exc.operation == "read" else "retry, and report it with the request id if it repeats"
    return error_response(500, f"the memory store failed during {operation} (request id {request_id}): {hint}",
                          code="store_error")


def _location(loc: Sequence[Any]) -> str:
    """``("body", "messages", 0, "role")`` -> ``messages.0.role`` (the first item says where it was sent)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts)


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """One readable line for a list of pydantic errors, and the first offending parameter."""
    lines = []
    for err in list(errors)[:5]:
        where = _location(err.get("loc", ()))
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            lines.append("the request body is not valid JSON")
        elif err.get("type") == "missing":
            lines.append(f"`{where}` is required")
        else:
            lines.append(f"`{where or 'body'}`: {msg}")
    first = _location(errors[0].get("loc", ())) if errors else None
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(lines) + more, first or None


def exception_response(exc: Exception, scope: MutableMapping[str, Any]) -> JSONBytes:
    """The answer to an exception a route raised: a mindgate error's own (a store failure without its
    internals), anything else a 500 naming the request id, logged with its traceback."""
    request_id = scope.get("state", {}).get("request_id")
    if isinstance(exc, MindgateError):
        if isinstance(exc, StoreError) and exc.http_status >= 500:
            return store_error_response(exc, request_id)
        return mindgate_error_response(exc)
    log.error("unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), request_id,
              exc_info=(type(exc), exc, exc.__traceback__))
    return error_response(500, f"internal error ({type(exc).__name__}); request id {request_id}")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MindgateError)
    async def _mindgate(request: Request, exc: MindgateError) -> Response:
        return exception_response(exc, request.scope)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        message, param = validation_message(exc.errors())
        return error_response(400, f"invalid request: {message}", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"unknown route {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return exception_response(exc, request.scope)
