"""Routing: fallback chains with retries and circuit breakers (:class:`Router`), and semantic routes
(:mod:`mindgate.routing.semantic`)."""

from mindgate.errors import StreamInterruptedError, TargetTimeoutError
from mindgate.routing.breaker import BreakerState, CircuitBreaker
from mindgate.routing.retry import RetryPolicy
from mindgate.routing.router import Router, Target

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy", "Router", "StreamInterruptedError", "Target",
           "TargetTimeoutError"]
