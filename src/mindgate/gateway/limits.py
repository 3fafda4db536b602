"""Per-key rate limits (token buckets) and the request body size limit.

Requests per minute: a bucket of ``requests_per_minute`` refilled continuously; an empty bucket is a 429
with ``Retry-After`` (seconds until one request is available). Tokens per minute: a request is admitted
while the key's token bucket is positive and the tokens it actually used are charged afterwards (the
count is only known then), so one large request can put the bucket into debt that later requests wait
out. Buckets live in this process (one worker).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mindgate.errors import TooManyRequestsError
from mindgate.gateway.auth import Principal
from mindgate.gateway.responses import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenBucket:
    """``capacity`` units, refilled at ``capacity`` per minute. ``clock`` is injectable for tests."""

    def __init__(self, capacity: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / 60.0
        self._clock = clock
        self._level = float(capacity)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def take(self, amount: float = 1.0) -> float:
        """Take ``amount`` if available and return 0; otherwise take nothing and return the seconds to wait."""
        self._refill()
        if self._level >= amount:
            self._level -= amount
            return 0.0
        return (amount - self._level) / self.rate

    def wait_until_positive(self) -> float:
        """0 when the level is above zero, else the seconds until it is."""
        self._refill()
        return 0.0 if self._level > 0 else (1.0 - self._level) / self.rate

    def charge(self, amount: float) -> None:
        """Subtract ``amount`` even into debt (usage known only after the fact)."""
        self._refill()
        self._level -= amount


class RateLimiter:
    """The buckets of every key that has limits."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}

    def _bucket(self, table: dict[str, TokenBucket], key: str, capacity: int) -> TokenBucket:
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(capacity, clock=self._clock)
        return bucket

    def admit(self, principal: Principal | None, *, uses_tokens: bool = False) -> None:
        """Count one request against ``principal``'s limits; raise a 429 :class:`TooManyRequestsError` when over."""
        if principal is None:
            return
        if uses_tokens and principal.tokens_per_minute:
            wait = self._bucket(self._tokens, principal.name, principal.tokens_per_minute).wait_until_positive()
            if wait > 0:
                raise _limited(principal, "tokens", principal.tokens_per_minute, wait)
        if principal.requests_per_minute:
            wait = self._bucket(self._requests, principal.name, principal.requests_per_minute).take()
            if wait > 0:
                raise _limited(principal, "requests", principal.requests_per_minute, wait)

    def charge_tokens(self, principal: Principal | None, tokens: int) -> None:
        if principal is not None and principal.tokens_per_minute and tokens > 0:
            self._bucket(self._tokens, principal.name, principal.tokens_per_minute).charge(tokens)


def _limited(principal: Principal, what: str, limit: int, wait: float) -> TooManyRequestsError:
    seconds = max(1, math.ceil(wait))
    return TooManyRequestsError(f"API key {principal.name!r} is over its limit of {limit} {what} per minute",
                                retry_after=seconds, hint=f"retry after {seconds}s")


class BodySizeLimit:
    """ASGI middleware: a body over ``max_bytes`` is answered 413 (OpenAI error shape) before the app
    reads it. A declared ``Content-Length`` is checked up front; a chunked body is buffered up to the
    limit and replayed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        length: str | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None:
            if not length.isdigit():
                await error_response(400, f"invalid Content-Length header {length!r}")(scope, receive, send)
            elif int(length) > self.max_bytes:
                await self._too_large(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"request body exceeds the gateway limit of {self.max_bytes} bytes",
                                  code="request_too_large")
        await response(scope, receive, send)
