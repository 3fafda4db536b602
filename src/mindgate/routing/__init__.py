"""Routing: fallback chains with retries and circuit breakers (:class:`Router`), chains built from config
(:func:`chat_model_for`), the ``auto`` chain over running local servers (:func:`auto_router`), and semantic
routes (configured under ``routing.routes``)."""

from typing import Any

from mindgate.errors import StreamInterruptedError, TargetTimeoutError
from mindgate.routing._breaker import BreakerState, CircuitBreaker
from mindgate.routing._chains import chat_model_for
from mindgate.routing._retry import RetryPolicy
from mindgate.routing._router import Router, Target

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy", "Router", "StreamInterruptedError", "Target",
           "TargetTimeoutError", "auto_router", "chat_model_for"]


def __getattr__(name: str) -> Any:
    # auto_router pulls in every local provider's client; import it only when asked for.
    if name == "auto_router":
        from mindgate.routing._auto import auto_router

        return auto_router
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
