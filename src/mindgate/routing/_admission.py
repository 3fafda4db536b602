"""Admission: which targets of a chain may take a request, and what the caller is told when none did.

A chain is a list of :class:`Slot` (a :class:`Target` and what the router knows about it). For each request
:class:`Admission` walks the slots from the current tier on (:mod:`mindgate.routing._tiers`; larger tiers are
noted as skipped) and admits one when

1. its circuit breaker lets the request through (an open one is skipped without fitting; a known window too
   small for the request is still noted as a context skip),
2. the request, fitted by the request's fit stage (:class:`~mindgate.context._fit.ContextFitter`), fits its
   context window, and
3. with a :class:`~mindgate.routing._placement.Placement`, its model fits this machine's free memory (or room
   is made for it).

Each skip is recorded as an :class:`Outcome` and in the route trace. :meth:`Admission.exhausted` turns the
outcomes of a request no target answered into the error the caller gets: a
:class:`~mindgate.errors.ContextOverflowError` when the request is too large for every target that is there,
else a :class:`~mindgate.errors.RoutingError` naming each target's state. The router
(:mod:`mindgate.routing._router`) runs the calls, retries and fallbacks around it.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mindgate.context._fit import ContextFitter
from mindgate.context._tokens import TokenCounter
from mindgate.errors import ConfigurationError, ContextOverflowError, MindgateError, RoutingError
from mindgate.providers._base import ChatModel, Message
from mindgate.routing._breaker import BreakerState, CircuitBreaker
from mindgate.routing._retry import ErrorKind, RetryPolicy, Verdict, classify
from mindgate.routing._tiers import Tier, TierPolicy
from mindgate.routing._trace import current as current_trace

if TYPE_CHECKING:
    from mindgate.routing._placement import Placement

HealthCheck = Callable[[], Awaitable[Any]]
LATENCY_SAMPLES = 1024


@dataclass
class Target:
    """One step of a chain. ``timeout`` bounds a whole completion and, for streams, each silence between
    chunks after the first; ``first_token_timeout`` bounds a stream's first chunk (default: ``timeout``).
    ``context_length`` overrides the model's own (None: the model's, else unchecked).
    ``health_check`` is an async callable that raises when the target is down (default: list the server's
    models for OpenAI-compatible servers, the model's own ``ahealth_check`` when it has one).
    ``breaker_failures`` / ``breaker_cooldown`` override the router's for this target (e.g. 1 failure for
    a local server that is simply not running). ``min_free_memory`` (bytes) makes the chain tiered: see
    :mod:`mindgate.routing._tiers`."""

    model: ChatModel
    name: str = ""
    timeout: float | None = None
    first_token_timeout: float | None = None
    context_length: int | None = None
    health_check: HealthCheck | None = None
    breaker_failures: int | None = None
    breaker_cooldown: float | None = None
    min_free_memory: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.model.provider}:{self.model.model}"
        for key in ("timeout", "first_token_timeout", "context_length", "breaker_failures", "breaker_cooldown",
                    "min_free_memory"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigurationError(f"target {self.name!r}: {key} must be positive, got {value}")

    @property
    def context_window(self) -> int | None:
        return self.context_length or self.model.context_length


@dataclass
class Slot:
    """A target and what the router knows about it."""

    target: Target
    breaker: CircuitBreaker
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    successes: int = 0
    last_error: str | None = None

    def succeeded(self, seconds: float) -> None:
        self.successes += 1
        self.latencies.append(seconds)
        self.breaker.record_success()

    def failed(self, verdict: Verdict, exc: BaseException) -> None:
        self.errors[verdict.kind.value] += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if verdict.breaker_failure:
            self.breaker.record_failure()
        else:
            self.breaker.release()

    def describe(self) -> str:
        state = self.breaker.state
        if state is BreakerState.OPEN:
            return (f"open after {self.breaker.failures} failure(s), retried in {self.breaker.retry_in():.1f}s"
                    + (f" (last: {self.last_error})" if self.last_error else ""))
        return state.value.replace("_", "-")


@dataclass
class Outcome:
    """Why one target did not answer this request."""

    slot: Slot
    reason: str  # "context", "open", "memory", "tier", "failed"
    detail: str = ""
    needed: int | None = None
    exc: BaseException | None = None


def note_skip(slot: Slot, reason: str) -> None:
    """Record in the current route trace that ``slot`` was passed over, and why."""
    trace = current_trace()
    if trace is not None:
        trace.skipped.append((slot.target.name, reason))


async def retry_or_move_on(slot: Slot, retry: RetryPolicy, exc: Exception, attempt: int) -> bool:
    """Record a failed attempt on ``slot``'s breaker: True when the same target should be tried again (after
    the backoff, already slept), False to move on to the next target. Raises ``exc`` itself when no other
    target can help (a client error)."""
    verdict = classify(exc)
    slot.failed(verdict, exc)
    if not verdict.fall_back:
        raise exc
    if verdict.retry:
        delay = retry.delay(attempt, exc)
        if delay is not None and slot.breaker.allow():
            await asyncio.sleep(delay)
            return True
    return False


def tier_policy(chain: str, slots: Sequence[Slot], placement: Placement | None, *, hysteresis: float,
                recover_after: float) -> TierPolicy | None:
    """The tier policy of a chain whose targets name ``min_free_memory`` (None when none does)."""
    if not any(slot.target.min_free_memory for slot in slots):
        return None
    if placement is None:
        raise ConfigurationError(f"routing chain {chain!r} has tiers (min_free_memory) but no placement",
                                 hint="build the router with placement=... (from_config does this)")
    return TierPolicy(chain, [Tier(s.target.name, s.target.model, s.target.min_free_memory) for s in slots],
                      placement.source, held_bytes=placement.held_bytes, pending_bytes=placement.pending_bytes,
                      uses_gpu=placement.uses_gpu, hysteresis=hysteresis, recover_after=recover_after,
                      decisions=placement.decisions)


class Admission:
    """Admission of requests to the slots of chain ``chain``; see the module docstring."""

    def __init__(self, chain: str, slots: list[Slot], *, counter: TokenCounter, placement: Placement | None,
                 tiers: TierPolicy | None) -> None:
        self.chain = chain
        self.slots = slots
        self.counter = counter
        self.placement = placement
        self.tiers = tiers

    def walk(self, outcomes: list[Outcome]) -> list[Slot]:
        """The slots to try, in order: from the current tier on (larger tiers are noted as skipped)."""
        start = self.tiers.current if self.tiers is not None else 0
        if not start:
            return self.slots
        assert self.tiers is not None
        for slot in self.slots[:start]:
            outcomes.append(Outcome(slot, "tier", f"memory pressure: {self.tiers.reason}"))
            note_skip(slot, f"memory pressure: {self.tiers.reason}")
        return self.slots[start:]

    async def admit(self, slot: Slot, messages: Sequence[Message], max_tokens: int, fit: ContextFitter,
                     outcomes: list[Outcome]) -> list[Message] | None:
        """The request as ``slot`` gets it (fitted to its context), or None when it may not go there: it
        cannot hold the fitted request, its breaker does not let it through, or it does not fit memory."""
        if slot.breaker.state is BreakerState.OPEN:
            # no fitting (a summariser call) for a target that will not be tried; its tokenizer is not asked
            # either (its server is likely down), but a known window that cannot hold the request is noted
            await self._note_open(slot, messages, max_tokens, fit, outcomes)
            return None
        try:
            fitted = await fit.fit(messages, window=slot.target.context_window, max_tokens=max_tokens,
                                   model=slot.target.model, target=slot.target.name, model_id=slot.target.model.model)
        except ContextOverflowError as exc:
            outcomes.append(Outcome(slot, "context", exc.message, needed=exc.needed))
            note_skip(slot, "context too small")
            return None
        if not slot.breaker.allow():
            outcomes.append(Outcome(slot, "open", slot.describe()))
            note_skip(slot, "circuit open")
            return None
        action = ""
        if self.placement is not None:
            verdict = await self.placement.admit(slot.target.model, target=slot.target.name, chain=self.chain)
            if not verdict.ok:
                slot.breaker.release()
                outcomes.append(Outcome(slot, "memory", verdict.reason))
                note_skip(slot, verdict.reason)
                return None
            action = "" if verdict.action == "unknown" else verdict.describe()
        trace = current_trace()
        if trace is not None:
            trace.served, trace.action = slot.target.name, action
        return fitted

    async def _note_open(self, slot: Slot, messages: Sequence[Message], max_tokens: int, fit: ContextFitter,
                         outcomes: list[Outcome]) -> None:
        try:
            await ContextFitter("error", reserve=fit.reserve, counter=fit.counter).fit(
                messages, window=slot.target.context_window, max_tokens=max_tokens, target=slot.target.name)
        except ContextOverflowError as exc:
            if fit.policy_for(slot.target.name, slot.target.model.model) == "error":
                outcomes.append(Outcome(slot, "context", exc.message, needed=exc.needed))
                note_skip(slot, "context too small")
                return
        outcomes.append(Outcome(slot, "open", slot.describe()))
        note_skip(slot, "circuit open")

    def exhausted(self, outcomes: list[Outcome], messages: Sequence[Message], max_tokens: int) -> MindgateError:
        if any(too_small(o) for o in outcomes) and all(too_small(o) or unavailable(o) for o in outcomes):
            sizes = [o.slot.target.context_window or 0 for o in outcomes if too_small(o)]
            needed = max((o.needed for o in outcomes if o.needed is not None),
                         default=self.counter.estimate(messages) + max_tokens)
            listing = "; ".join(f"{o.slot.target.name}: {o.detail if too_small(o) else 'unavailable, ' + o.detail}"
                                for o in outcomes)
            return ContextOverflowError(
                f"the request fits no target of chain {self.chain!r} ({listing})", needed=needed,
                available=max(sizes) if sizes else None,
                hint="shorten the conversation, let mindgate fit it (context policy truncate, summarize or memory), "
                     "lower max_tokens, or add a target with a larger context")
        waits = [o.slot.breaker.retry_in() for o in outcomes if o.slot.breaker.state is BreakerState.OPEN]
        retry_after = round(min(waits), 3) if waits else None
        every_open = all(o.reason == "open" for o in outcomes)
        head = (f"every target of chain {self.chain!r} is unavailable (circuit open)" if every_open
                else f"no target of chain {self.chain!r} could answer")
        parts = []
        for o in outcomes:
            if o.reason in ("open", "memory", "tier"):
                parts.append(f"{o.slot.target.name}: {o.detail}")
            elif o.reason == "context":
                parts.append(f"{o.slot.target.name}: skipped, {o.detail}")
            else:
                parts.append(f"{o.slot.target.name}: failed with {o.detail}; breaker {o.slot.describe()}")
        hint = (f"the next target is retried in {retry_after:.1f}s; start the servers or add a target"
                if retry_after is not None else "check the targets' servers, or add a target to the chain")
        if any(o.reason in ("memory", "tier") for o in outcomes):
            hint = ("free memory (`mindgate models ps`, `mindgate models unload ID`) or add a smaller target; "
                    + hint)
        error = RoutingError(f"{head}: " + " | ".join(parts), retry_after=retry_after, hint=hint)
        error.__cause__ = next((o.exc for o in reversed(outcomes) if o.exc is not None), None)
        return error


def too_small(outcome: Outcome) -> bool:
    """The target could not hold the request (skipped, or the server said so)."""
    return outcome.reason == "context" or (outcome.exc is not None and classify(outcome.exc).kind is ErrorKind.CONTEXT)


def unavailable(outcome: Outcome) -> bool:
    """The target is not there to answer (breaker open, server unreachable, model missing, no memory)."""
    return outcome.reason in ("open", "memory", "tier") or (outcome.exc is not None and classify(outcome.exc).kind in (
        ErrorKind.NETWORK, ErrorKind.MODEL_NOT_FOUND))
