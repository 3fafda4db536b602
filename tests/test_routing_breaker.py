"""Circuit breaker state machine and the retry classification table (pure logic, a test clock)."""

from __future__ import annotations

import pytest

from mindgate.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextOverflowError,
    ModelNotFoundError,
    NetworkError,
    ProviderError,
    RateLimitError,
    StreamInterruptedError,
    TargetTimeoutError,
)
from mindgate.routing._breaker import BreakerState, CircuitBreaker
from mindgate.routing._retry import ErrorKind, RetryPolicy, classify


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # a success resets the count: failures must be consecutive
    assert breaker.failures == 0
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(10.0)
    clock.now += 4
    assert breaker.retry_in() == pytest.approx(6.0)
    assert breaker.opened_count == 1


def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its outcome
    assert not breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_failed_probe_reopens_for_a_fresh_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 5.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 6
    assert breaker.allow()
    breaker.record_failure()  # one failure in half-open is enough
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(5.0)
    assert breaker.opened_count == 2


def test_released_probe_frees_the_slot_without_changing_state() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()  # e.g. the probe request was cancelled
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_breaker_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0)


@pytest.mark.parametrize(("error", "kind", "retry", "fall_back", "counts"), [
    (NetworkError("refused", url="u"), ErrorKind.NETWORK, True, True, True),
    (TargetTimeoutError("slow", url="u"), ErrorKind.TIMEOUT, False, True, True),
    (RateLimitError("429", retry_after=1.0, status_code=429), ErrorKind.RATE_LIMIT, True, True, True),
    (ProviderError("500", status_code=500), ErrorKind.SERVER, True, True, True),
    (ProviderError("503", status_code=503), ErrorKind.SERVER, True, True, True),
    (ProviderError("bad", status_code=400), ErrorKind.CLIENT, False, False, False),
    (ProviderError("unprocessable", status_code=422), ErrorKind.CLIENT, False, False, False),
    (ProviderError("This model's maximum context length is 2048 tokens", status_code=400), ErrorKind.CONTEXT,
     False, True, False),
    (AuthenticationError("key", status_code=401, retryable=False), ErrorKind.AUTH, False, True, True),
    (ModelNotFoundError("gone", status_code=404), ErrorKind.MODEL_NOT_FOUND, False, True, True),
    (ContextOverflowError("too long"), ErrorKind.CONTEXT, False, True, False),
    (ConfigurationError("unknown option"), ErrorKind.CLIENT, False, False, False),
    (RuntimeError("provider bug"), ErrorKind.OTHER, False, True, True),
])
def test_classification_table(error: Exception, kind: ErrorKind, retry: bool, fall_back: bool, counts: bool) -> None:
    verdict = classify(error)
    assert (verdict.kind, verdict.retry, verdict.fall_back, verdict.breaker_failure) == (kind, retry, fall_back,
                                                                                          counts)


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(retries=6, backoff_base=0.1, backoff_max=0.5)
    error = NetworkError("x", url="u")
    for attempt in range(6):
        cap = min(0.5, 0.1 * 2 ** attempt)
        delays = [policy.delay(attempt, error) for _ in range(200)]
        assert all(d is not None and 0.0 <= d <= cap for d in delays)
        assert max(d for d in delays if d is not None) > cap * 0.7  # jitter spans the range
    assert policy.delay(6, error) is None  # retries used up


def test_retry_after_is_honoured_exactly_or_skipped_when_too_long() -> None:
    policy = RetryPolicy(retries=2, backoff_max=5.0)
    assert policy.delay(0, RateLimitError("429", retry_after=1.5)) == 1.5
    assert policy.delay(0, RateLimitError("429", retry_after=30.0)) is None  # go elsewhere instead of waiting
    no_header = policy.delay(0, RateLimitError("429"))
    assert no_header is not None and 0.0 <= no_header <= 0.25


def test_stream_interrupted_error_says_how_far_it_got() -> None:
    error = StreamInterruptedError("broke", chunks=7)
    assert error.chunks == 7 and error.code == "stream_interrupted"
