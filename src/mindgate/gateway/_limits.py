"""Per-key rate limits (token buckets).

Requests per minute: a bucket of ``requests_per_minute`` refilled continuously; an empty bucket is a 429
with ``Retry-After`` (seconds until one request is available). Tokens per minute: a request is admitted
while the key's token bucket is positive and the tokens it actually used are charged afterwards (the
count is only known then), so one large request can put the bucket into debt that later requests wait
out. Buckets live in this process (one worker).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from mindgate.errors import TooManyRequestsError
from mindgate.gateway._auth import Principal


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

    def admit_request(self, principal: Principal | None) -> None:
        """Count one request against ``principal``'s requests per minute; a 429 :class:`TooManyRequestsError`
        when over. The gateway's guard calls it once per request, before the body is read."""
        if principal is not None and principal.requests_per_minute:
            wait = self._bucket(self._requests, principal.name, principal.requests_per_minute).take()
            if wait > 0:
                raise _limited(principal, "requests", principal.requests_per_minute, wait)

    def check_tokens(self, principal: Principal | None) -> None:
        """A 429 while ``principal``'s token bucket is in debt (checked before each model call)."""
        if principal is not None and principal.tokens_per_minute:
            wait = self._bucket(self._tokens, principal.name, principal.tokens_per_minute).wait_until_positive()
            if wait > 0:
                raise _limited(principal, "tokens", principal.tokens_per_minute, wait)

    def charge_tokens(self, principal: Principal | None, tokens: int) -> None:
        if principal is not None and principal.tokens_per_minute and tokens > 0:
            self._bucket(self._tokens, principal.name, principal.tokens_per_minute).charge(tokens)


def _limited(principal: Principal, what: str, limit: int, wait: float) -> TooManyRequestsError:
    seconds = max(1, math.ceil(wait))
    return TooManyRequestsError(f"API key {principal.name!r} is over its limit of {limit} {what} per minute",
                                retry_after=seconds, hint=f"retry after {seconds}s")
