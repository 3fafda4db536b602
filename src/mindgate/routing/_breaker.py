"""A circuit breaker per routing target: closed -> open after N consecutive failures -> half-open after a
cool-down, where exactly one probe request may pass; its success closes the breaker, its failure opens it
again for another cool-down.

The breaker is passive: state changes happen when the router asks (:meth:`CircuitBreaker.allow`) or
reports an outcome, so an idle breaker costs nothing. It is used from one event loop and takes no locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """``failure_threshold`` consecutive failures open the breaker for ``cooldown`` seconds.

    ``clock`` is a monotonic clock in seconds (tests and benches may pass their own).
    """

    def __init__(self, failure_threshold: int = 3, cooldown: float = 30.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown <= 0:
            raise ValueError("cooldown must be positive")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose cool-down is over reads as half-open)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through; 0 when it would now."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - self._clock())

    def allow(self) -> bool:
        """Whether a request may go to the target now; in half-open state only the first caller (the probe)
        gets True until its outcome is reported."""
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.cooldown:
                return False
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        self._state = BreakerState.CLOSED

    def record_failure(self) -> None:
        self._failures += 1
        self._probe_in_flight = False
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._trip()

    def release(self) -> None:
        """The request that :meth:`allow` let through ended without saying anything about the target's
        health (cancelled, or rejected as a bad request): free the probe slot, change nothing else."""
        self._probe_in_flight = False

    def force_open(self) -> None:
        """Open now (e.g. a health check found the target down)."""
        self._failures = max(self._failures, self.failure_threshold)
        self._trip()

    def _trip(self) -> None:
        if self._state is not BreakerState.OPEN:
            self.opened_count += 1
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
