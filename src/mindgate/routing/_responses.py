"""Responses API pass-through (``/v1/responses`` sent to a target's own route) over a
:class:`~mindgate.routing._router.Router`'s chain.

The chain is walked in its order, with its circuit breakers and retry policy, as for chat: a target whose
breaker is open is skipped; a target that passes Responses requests through (its provider config's
``responses_api``) is called natively; a retryable failure (unreachable, 5xx, 429, timeout, missing model) is
retried on the same target with the chain's backoff, then the next target is tried; a client error (HTTP 4xx)
is raised at once. The walk stops at the first target that does not pass through (or that turns out, under
``auto``, to have no such route): then :class:`~mindgate.errors.NativeResponsesUnavailable` is raised
and the caller bridges the whole request onto chat completions over the same chain, so the chain's order is
kept and a bridged target later in the chain still serves as the fallback (targets that already failed here
are tried again there, as chat tries them). A stream falls back only before its first event. Every target
failed and none was left to bridge to: :class:`~mindgate.errors.RoutingError` naming each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from mindgate.errors import MindgateError, NativeResponsesUnavailable, RoutingError, TargetTimeoutError
from mindgate.routing._admission import retry_or_move_on
from mindgate.routing._breaker import BreakerState

if TYPE_CHECKING:
    from mindgate.routing._admission import Slot
    from mindgate.routing._router import Router


def passes(router: Router) -> bool:
    """Whether the chain's first target that may take a request now passes Responses requests through."""
    for slot in router._slots:
        if slot.breaker.state is not BreakerState.OPEN:
            return slot.target.model.passes_responses
    return False


async def _retry(router: Router, slot: Slot, exc: Exception, attempt: int, errors: list[str]) -> bool:
    """:func:`retry_or_move_on` as the chat walk does it; a failed attempt that moves on is named in ``errors``."""
    if await retry_or_move_on(slot, router.retry, exc, attempt):
        return True
    errors.append(f"{slot.target.name}: {type(exc).__name__}: {exc}")
    return False


def _end(router: Router, errors: list[str], bridged: str | None) -> MindgateError:
    if bridged is not None:
        return NativeResponsesUnavailable(f"target {bridged!r} of chain {router.model!r} does not pass Responses "
                                          "requests through")
    return RoutingError(f"no target of chain {router.model!r} answered the Responses request: {'; '.join(errors)}",
                        hint="check the targets with `mindgate routing status`")


def _timeout(slot: Slot, seconds: float | None) -> TargetTimeoutError:
    return TargetTimeoutError(f"target {slot.target.name!r} did not answer within {seconds}s",
                              url=slot.target.name, hint="raise the target's `timeout` or use a faster model")


def _admitted(router: Router, slot: Slot, errors: list[str]) -> bool:
    """Whether ``slot`` takes this request natively: False when its breaker is open (skipped); raises
    :class:`NativeResponsesUnavailable` when it does not pass through (the rest of the chain is bridged)."""
    if not slot.target.model.passes_responses:
        raise _end(router, errors, slot.target.name)
    if not slot.breaker.allow():
        errors.append(f"{slot.target.name}: {slot.describe()}")
        return False
    return True


async def create(router: Router, body: dict[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    for slot in router._slots:
        if not _admitted(router, slot, errors):
            continue
        attempt = 0
        while True:
            slot.requests += 1
            start = time.perf_counter()
            try:
                async with asyncio.timeout(slot.target.timeout):
                    result = await slot.target.model.aresponses(body)
            except NativeResponsesUnavailable:
                slot.breaker.release()
                raise _end(router, errors, slot.target.name) from None
            except asyncio.CancelledError:
                slot.breaker.release()
                raise
            except Exception as exc:  # classified: retried, re-routed or raised
                failure = _timeout(slot, slot.target.timeout) if isinstance(exc, TimeoutError) else exc
                if await _retry(router, slot, failure, attempt, errors):
                    attempt += 1
                    continue
                break
            slot.succeeded(time.perf_counter() - start)
            return result
    raise _end(router, errors, None)


async def stream(router: Router, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    errors: list[str] = []
    for slot in router._slots:
        if not _admitted(router, slot, errors):
            continue
        attempt = 0
        limit = slot.target.first_token_timeout or slot.target.timeout
        while True:
            slot.requests += 1
            start = time.perf_counter()
            events = aiter(slot.target.model.aresponses_stream(body))
            try:
                async with asyncio.timeout(limit):
                    first = await anext(events)
            except StopAsyncIteration:
                slot.succeeded(time.perf_counter() - start)
                return
            except NativeResponsesUnavailable:
                slot.breaker.release()
                await _close(events)
                raise _end(router, errors, slot.target.name) from None
            except asyncio.CancelledError:
                slot.breaker.release()
                await _close(events)
                raise
            except Exception as exc:  # classified: retried, re-routed or raised
                await _close(events)
                failure = _timeout(slot, limit) if isinstance(exc, TimeoutError) else exc
                if await _retry(router, slot, failure, attempt, errors):
                    attempt += 1
                    continue
                break
            slot.succeeded(time.perf_counter() - start)
            try:
                yield first
                async for event in events:
                    yield event
            finally:
                await _close(events)
            return
    raise _end(router, errors, None)


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # closing a failed upstream stream; its error is handled
            await aclose()
