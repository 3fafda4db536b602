"""A fallback chain that is itself a :class:`~mindgate.providers._base.ChatModel`.

A :class:`Router` holds an ordered list of :class:`Target` (a chat model plus its timeouts and context
size). For each request it walks the chain (steps 1-3 are :mod:`mindgate.routing._admission`):

1. a target whose circuit breaker is open is skipped; a half-open one gets this request as its one probe;
2. the request is fitted to the target's context window by the request's fit stage (``fit=``, a
   :class:`~mindgate.context._fit.ContextFitter`; by default one that only checks: the ``error`` policy with
   no reserve); a target that cannot hold even the fitted request is skipped without a call (a free byte
   bound first; the model's tokenizer or the calibrated estimate only near the limit);
3. a target on this machine whose model is not loaded is admitted by fit (:mod:`mindgate.routing._placement`:
   it fits free memory, or idle models are unloaded least recently used first to make room, or it is
   skipped for lack of memory); a tiered chain (targets with ``min_free_memory``) starts at the largest
   tier the machine can hold now (:mod:`mindgate.routing._tiers`);
4. the call runs under the target's timeout (streams: time to first token, then the longest silence
   between chunks); retryable failures are retried with backoff (:mod:`mindgate.routing._retry`), then the
   next target is tried; a plain client error (HTTP 4xx) is raised at once.

Why the request went where it went is noted in the current route trace (:mod:`mindgate.routing._trace`,
the ``X-Mindgate-Route`` header of the gateway). Nothing fits -> :class:`~mindgate.errors.ContextOverflowError`
(HTTP 400) with sizes; also when some target was skipped for its context and every other one is unavailable
(open, unreachable, no such model, no memory): a context skip is not an outage. Every target open or failed
otherwise -> :class:`~mindgate.errors.RoutingError` naming each target's state and when it will be tried again.
A stream that fails before its first chunk falls back like a completion; one that fails later raises
:class:`~mindgate.errors.StreamInterruptedError`: an answer is never silently cut short.

The router keeps per-target counters (requests, successes, errors by kind, latency p50/p99 over the last
1024 answers, to the first token for streams) that :meth:`Router.status` reports, and can probe targets in
the background (``health_check_interval``). The router adds a few microseconds per request (see
``bench/router.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from mindgate.context._fit import ContextFitter
from mindgate.context._tokens import TokenCounter
from mindgate.errors import ConfigurationError, MindgateError, StreamInterruptedError, TargetTimeoutError
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message
from mindgate.routing._admission import (
    Admission,
    HealthCheck,
    Outcome,
    Slot,
    Target,
    note_skip,
    retry_or_move_on,
    tier_policy,
)
from mindgate.routing._breaker import BreakerState, CircuitBreaker
from mindgate.routing._fitted import FittedRouter
from mindgate.routing._retry import ErrorKind, RetryPolicy, Verdict, classify
from mindgate.routing._tiers import DEFAULT_HYSTERESIS, DEFAULT_RECOVER_AFTER

if TYPE_CHECKING:
    from mindgate.config import MindgateConfig
    from mindgate.routing._placement import Placement

__all__ = ["Router", "Target"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Router(ChatModel):
    """A chain of targets, tried in order; see the module docstring for the contract.

    ``Router([target_or_model, ...], name="default", retry=RetryPolicy(retries=2), breaker_failures=3,
    breaker_cooldown=30.0, health_check_interval=None, placement=None)``; plain chat models become targets
    with no timeouts. ``placement`` turns on admission by fit and, for targets with ``min_free_memory``,
    tiers (``tier_hysteresis``, ``tier_recover_after``). ``Router.from_config(chain_name, config)`` builds one
    from the ``routing:`` section.
    """

    provider = "router"

    def __init__(self, targets: Sequence[Target | ChatModel], *, name: str = "chain", retry: RetryPolicy | None = None,
                 breaker_failures: int = 3, breaker_cooldown: float = 30.0,
                 health_check_interval: float | None = None, counter: TokenCounter | None = None,
                 clock: Callable[[], float] = time.monotonic, placement: Placement | None = None,
                 tier_hysteresis: float = DEFAULT_HYSTERESIS,
                 tier_recover_after: float = DEFAULT_RECOVER_AFTER) -> None:
        super().__init__(name)
        if not targets:
            raise ConfigurationError(f"routing chain {name!r} has no targets", hint="give at least one target")
        self.retry = retry or RetryPolicy()
        self.health_check_interval = health_check_interval
        self.counter = counter or TokenCounter()
        self._slots: list[Slot] = []
        seen: set[str] = set()
        for item in targets:
            target = item if isinstance(item, Target) else Target(item)
            if target.name in seen:
                raise ConfigurationError(f"routing chain {name!r} names target {target.name!r} twice",
                                         hint="give each target a distinct name")
            seen.add(target.name)
            breaker = CircuitBreaker(target.breaker_failures or breaker_failures,
                                     target.breaker_cooldown or breaker_cooldown, clock=clock)
            self._slots.append(Slot(target, breaker))
        self._health_task: asyncio.Task[None] | None = None
        self.placement = placement
        self.tiers = tier_policy(name, self._slots, placement, hysteresis=tier_hysteresis,
                                 recover_after=tier_recover_after)
        self._admission = Admission(name, self._slots, counter=self.counter, placement=placement, tiers=self.tiers)

    # -- construction from config --------------------------------------------------------------------

    @classmethod
    def from_config(cls, chain: str, config: MindgateConfig) -> Router:
        """The chain named ``chain`` under ``routing.chains``; ``auto`` (when not defined there) is the
        embedded default chain of :mod:`mindgate.routing._auto`."""
        from mindgate.routing._chains import router_from_config

        return router_from_config(chain, config)

    # -- ChatModel surface ---------------------------------------------------------------------------

    @property
    def targets(self) -> list[Target]:
        return [slot.target for slot in self._slots]

    @property
    def endpoint_key(self) -> str:
        return f"router:{self.model}"

    @property
    def context_length(self) -> int | None:
        """The largest context any target offers; None when some target's is unknown."""
        sizes = [slot.target.context_window for slot in self._slots]
        return None if any(s is None for s in sizes) else max(s for s in sizes if s is not None)

    async def acomplete(self, messages: Sequence[Message], *, fit: ContextFitter | None = None,
                        **options: Any) -> ChatResponse:
        """One completion from the first target that holds the (fitted) request and answers."""
        self._ensure_health_checks()
        outcomes: list[Outcome] = []
        max_tokens = self._max_tokens(options)
        fit = fit or self._check_only()
        for slot in self._admission.walk(outcomes):
            fitted = await self._admission.admit(slot, messages, max_tokens, fit, outcomes)
            if fitted is None:
                continue
            attempt = 0
            while True:
                slot.requests += 1
                start = time.perf_counter()
                try:
                    if slot.target.timeout is None:
                        response = await slot.target.model.acomplete(fitted, **options)
                    else:
                        async with asyncio.timeout(slot.target.timeout):
                            response = await slot.target.model.acomplete(fitted, **options)
                except asyncio.CancelledError:
                    slot.breaker.release()
                    raise
                except TimeoutError as timeout:
                    exc: Exception = timeout if slot.target.timeout is None else TargetTimeoutError(
                        f"target {slot.target.name!r} did not answer within {slot.target.timeout}s",
                        url=slot.target.name, hint="raise the target's `timeout` or use a faster model")
                    if await self._retry_after_failure(slot, exc, attempt, outcomes):
                        attempt += 1
                        continue
                    break
                except Exception as error:  # classified: retried, re-routed or raised
                    if await self._retry_after_failure(slot, error, attempt, outcomes):
                        attempt += 1
                        continue
                    break
                slot.succeeded(time.perf_counter() - start)
                return response
        raise self._admission.exhausted(outcomes, messages, max_tokens)

    async def astream(self, messages: Sequence[Message], *, fit: ContextFitter | None = None,
                      **options: Any) -> AsyncIterator[ChatChunk]:
        """A stream from the first target that holds the (fitted) request and sends a first chunk."""
        self._ensure_health_checks()
        outcomes: list[Outcome] = []
        max_tokens = self._max_tokens(options)
        fit = fit or self._check_only()
        for slot in self._admission.walk(outcomes):
            fitted = await self._admission.admit(slot, messages, max_tokens, fit, outcomes)
            if fitted is None:
                continue
            attempt = 0
            while True:
                slot.requests += 1
                start = time.perf_counter()
                stream = slot.target.model.astream(fitted, **options)
                try:
                    first = await self._next(slot, stream, first=True)
                except StopAsyncIteration:
                    slot.succeeded(time.perf_counter() - start)
                    return
                except asyncio.CancelledError:
                    slot.breaker.release()
                    await _aclose(stream)
                    raise
                except Exception as error:  # classified: retried, re-routed or raised
                    await _aclose(stream)
                    if await self._retry_after_failure(slot, error, attempt, outcomes):
                        attempt += 1
                        continue
                    break
                slot.succeeded(time.perf_counter() - start)
                try:
                    yield first
                    chunks = 1
                    untimed = slot.target.timeout is None
                    while True:
                        try:
                            chunk = await (anext(stream) if untimed else self._next(slot, stream, first=False))
                        except StopAsyncIteration:
                            return
                        except Exception as error:
                            raise self._interrupted(slot, error, chunks) from error
                        yield chunk
                        chunks += 1
                finally:
                    await _aclose(stream)
        raise self._admission.exhausted(outcomes, messages, max_tokens)

    def bind(self, fit: ContextFitter) -> FittedRouter:
        """This router with one request's fit stage bound: a chat model whose calls pass ``fit=``."""
        return FittedRouter(self, fit)

    @property
    def text_completions(self) -> bool:
        return any(slot.target.model.text_completions for slot in self._slots)

    async def atext_complete(self, prompt: str, **options: Any) -> dict[str, Any]:
        from mindgate.routing._text import text_complete

        return await text_complete(self, prompt, options)

    def atext_stream(self, prompt: str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        from mindgate.routing._text import text_stream

        return text_stream(self, prompt, options)

    @property
    def passes_responses(self) -> bool:
        from mindgate.routing._responses import passes

        return passes(self)

    async def aresponses(self, body: dict[str, Any]) -> dict[str, Any]:
        from mindgate.routing._responses import create

        return await create(self, body)

    def aresponses_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        from mindgate.routing._responses import stream

        return stream(self, body)

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        """Tokens by the first reachable target's tokenizer (None when none has one)."""
        for slot in self._slots:
            try:
                tokens = await slot.target.model.acount_tokens(messages)
            except MindgateError:
                continue
            if tokens is not None:
                return tokens
        return None

    async def aclose(self) -> None:
        if self.tiers is not None:
            self.tiers.close()
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None
        for slot in self._slots:
            with contextlib.suppress(MindgateError):
                await slot.target.model.aclose()

    # -- status and health ---------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """One dict per target: name, provider, model, state (closed/open/half_open), failures
        (consecutive), retry_at (Unix time an open breaker lets a probe through) and retry_in (seconds),
        context_length, requests, successes, errors (by kind), latency_ms (p50, p99, samples), last_error."""
        now = time.time()
        rows = []
        for slot in self._slots:
            state = slot.breaker.state
            retry_in = slot.breaker.retry_in() if state is BreakerState.OPEN else 0.0
            samples = list(slot.latencies)
            rows.append({
                "name": slot.target.name,
                "provider": slot.target.model.provider,
                "model": slot.target.model.model,
                "state": state.value,
                "failures": slot.breaker.failures,
                "retry_at": now + retry_in if state is BreakerState.OPEN else None,
                "retry_in": round(retry_in, 3) if state is BreakerState.OPEN else None,
                "context_length": slot.target.context_window,
                "requests": slot.requests,
                "successes": slot.successes,
                "errors": dict(slot.errors),
                "latency_ms": {
                    "p50": round(_percentile(samples, 0.50) * 1000, 3) if samples else None,
                    "p99": round(_percentile(samples, 0.99) * 1000, 3) if samples else None,
                    "samples": len(samples),
                },
                "last_error": slot.last_error,
            })
        return rows

    async def ahealth_check(self) -> list[dict[str, Any]]:
        """Probe every target that has a health check, at once: success closes its breaker, failure opens
        it. Targets without one (the in-process engine) are left as they are. Returns :meth:`status`."""
        await asyncio.gather(*(self._probe(slot) for slot in self._slots))
        return self.status()

    def health_check(self) -> list[dict[str, Any]]:
        from mindgate._sync import run_sync

        return run_sync(self.ahealth_check())

    async def _probe(self, slot: Slot) -> None:
        check = _health_check_for(slot.target)
        if check is None:
            return
        try:
            async with asyncio.timeout(min(slot.target.timeout or 5.0, 5.0)):
                await check()
        except (MindgateError, TimeoutError, OSError) as exc:
            slot.last_error = f"health check: {type(exc).__name__}: {exc}"
            slot.breaker.force_open()
        else:
            slot.breaker.record_success()

    def _ensure_health_checks(self) -> None:
        if self.health_check_interval is None:
            return
        task = self._health_task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    async def _health_loop(self) -> None:
        assert self.health_check_interval is not None
        while True:
            await asyncio.sleep(self.health_check_interval)
            await self.ahealth_check()

    # -- the walk ------------------------------------------------------------------------------------

    def _max_tokens(self, options: dict[str, Any]) -> int:
        """The output the context must leave room for: ``max_tokens`` (else the first target's default, else
        one token: a request that leaves no room at all is what cannot work)."""
        value = options.get("max_tokens") or self._slots[0].target.model.defaults.get("max_tokens")
        return int(value) if value else 1

    def _check_only(self) -> ContextFitter:
        """The fit stage of a request that brings none: checks that the request fits, changes nothing."""
        return ContextFitter("error", reserve=0, counter=self.counter)

    async def _retry_after_failure(self, slot: Slot, exc: Exception, attempt: int,
                                   outcomes: list[Outcome]) -> bool:
        """:func:`retry_or_move_on`, and a failed attempt that moves on is recorded as the slot's outcome."""
        if await retry_or_move_on(slot, self.retry, exc, attempt):
            return True
        outcomes.append(Outcome(slot, "failed", f"{type(exc).__name__}: {exc}", exc=exc))
        note_skip(slot, f"failed with {type(exc).__name__}")
        return False

    async def _next(self, slot: Slot, stream: AsyncIterator[ChatChunk], *, first: bool) -> ChatChunk:
        limit = (slot.target.first_token_timeout or slot.target.timeout) if first else slot.target.timeout
        if limit is None:
            return await anext(stream)
        try:
            async with asyncio.timeout(limit):
                return await anext(stream)
        except TimeoutError:
            what = "its first token" if first else "the next chunk"
            raise TargetTimeoutError(f"target {slot.target.name!r} did not send {what} within {limit}s",
                                     url=slot.target.name,
                                     hint="raise the target's `first_token_timeout`/`timeout` or use a faster "
                                          "model") from None

    def _interrupted(self, slot: Slot, error: Exception, chunks: int) -> StreamInterruptedError:
        verdict = classify(error)
        slot.failed(Verdict(ErrorKind.INTERRUPTED, False, False, verdict.breaker_failure), error)
        return StreamInterruptedError(
            f"the stream from target {slot.target.name!r} broke after {chunks} chunk(s); the answer is "
            f"incomplete ({type(error).__name__}: {error})", chunks=chunks, provider=slot.target.model.provider,
            hint="retry the request")

def _health_check_for(target: Target) -> HealthCheck | None:
    if target.health_check is not None:
        return target.health_check
    own = getattr(target.model, "ahealth_check", None)
    if callable(own):
        return own
    client = getattr(target.model, "client", None)
    list_models = getattr(client, "list_models", None)
    return list_models if callable(list_models) else None


async def _aclose(stream: AsyncIterator[ChatChunk]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        # a broken stream may fail again while closing; its error was already handled
        with contextlib.suppress(Exception):
            await close()
