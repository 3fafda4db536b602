"""What a failure means for routing, and how long to wait before trying the same target again.

:func:`classify` turns any exception from a target into a :class:`Verdict`:

==========================================  =====  =========  ===============
error                                       retry  fall back  breaker failure
==========================================  =====  =========  ===============
NetworkError (refused, reset, cut stream)   yes    yes        yes
TargetTimeoutError (router's own timeout)   no     yes        yes
RateLimitError (429)                        yes    yes        yes
ProviderError 5xx / no status / retryable   yes    yes        yes
AuthenticationError, ModelNotFoundError     no     yes        yes
ContextOverflowError, 4xx "context length"  no     yes        no
other 4xx ProviderError, invalid requests   no     no         no
unexpected exceptions (provider bugs)       no     yes        yes
==========================================  =====  =========  ===============

A timed-out target is not retried: its time is spent, and the next target is the better bet.
A plain 4xx is the request's fault, so no other target would take it either: it is raised at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from mindgate.errors import (
    AuthenticationError,
    ContextOverflowError,
    MindgateError,
    ModelNotFoundError,
    NetworkError,
    ProviderError,
    RateLimitError,
    TargetTimeoutError,
)


class ErrorKind(StrEnum):
    """Counter buckets for a target's errors (``Router.status()`` reports counts per kind)."""

    NETWORK = "network"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    SERVER = "server_error"
    AUTH = "auth"
    MODEL_NOT_FOUND = "model_not_found"
    CONTEXT = "context_overflow"
    CLIENT = "client_error"
    INTERRUPTED = "stream_interrupted"
    OTHER = "other"


@dataclass(frozen=True)
class Verdict:
    kind: ErrorKind
    retry: bool
    fall_back: bool
    breaker_failure: bool


_CONTEXT_WORDS = ("context length", "context window", "context_length", "maximum context", "too many tokens",
                  "exceed")


def _is_context_error(exc: ProviderError) -> bool:
    text = f"{exc.message} {exc.body or ''}".lower()
    return "context" in text and any(word in text for word in _CONTEXT_WORDS)


def classify(exc: BaseException) -> Verdict:
    """The routing verdict for ``exc`` (see the module table)."""
    if isinstance(exc, TargetTimeoutError):
        return Verdict(ErrorKind.TIMEOUT, retry=False, fall_back=True, breaker_failure=True)
    if isinstance(exc, NetworkError):
        return Verdict(ErrorKind.NETWORK, retry=True, fall_back=True, breaker_failure=True)
    if isinstance(exc, ContextOverflowError):
        return Verdict(ErrorKind.CONTEXT, retry=False, fall_back=True, breaker_failure=False)
    if isinstance(exc, RateLimitError):
        return Verdict(ErrorKind.RATE_LIMIT, retry=True, fall_back=True, breaker_failure=True)
    if isinstance(exc, AuthenticationError):
        return Verdict(ErrorKind.AUTH, retry=False, fall_back=True, breaker_failure=True)
    if isinstance(exc, ModelNotFoundError):
        return Verdict(ErrorKind.MODEL_NOT_FOUND, retry=False, fall_back=True, breaker_failure=True)
    if isinstance(exc, ProviderError):
        if exc.retryable:
            return Verdict(ErrorKind.SERVER, retry=True, fall_back=True, breaker_failure=True)
        if _is_context_error(exc):
            return Verdict(ErrorKind.CONTEXT, retry=False, fall_back=True, breaker_failure=False)
        return Verdict(ErrorKind.CLIENT, retry=False, fall_back=False, breaker_failure=False)
    if isinstance(exc, MindgateError):  # ConfigurationError, InvalidRequestError: the caller's mistake
        return Verdict(ErrorKind.CLIENT, retry=False, fall_back=False, breaker_failure=False)
    return Verdict(ErrorKind.OTHER, retry=False, fall_back=True, breaker_failure=True)


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts per target with full-jitter exponential backoff:
    a delay drawn from ``[0, min(backoff_max, backoff_base * 2**attempt)]``.

    A 429's ``Retry-After`` is honoured exactly when it is at most ``backoff_max``; a longer one sends the
    request to the next target instead of waiting (:meth:`delay` returns None).
    """

    retries: int = 2
    backoff_base: float = 0.25
    backoff_max: float = 8.0

    def delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait before retry number ``attempt + 1`` (0-based ``attempt``), or None for
        "do not retry this target"."""
        if attempt >= self.retries:
            return None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return exc.retry_after if exc.retry_after <= self.backoff_max else None
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2.0 ** attempt))
