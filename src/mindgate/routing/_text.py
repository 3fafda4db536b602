"""Raw text completion (``/v1/completions``) over a :class:`~mindgate.routing._router.Router`'s chain: the
targets that have raw completion are tried in order, with their circuit breakers and the same fallback
rules as chat (a retryable failure moves on, a client error is raised at once). A stream falls back only
before its first chunk. No context admission: a raw prompt has no chat template to count."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from mindgate.errors import InvalidRequestError, MindgateError, RoutingError
from mindgate.routing._retry import classify

if TYPE_CHECKING:
    from mindgate.routing._admission import Slot
    from mindgate.routing._router import Router


def _candidates(router: Router) -> list[Slot]:
    slots = [slot for slot in router._slots if slot.target.model.text_completions]
    if not slots:
        names = ", ".join(slot.target.name for slot in router._slots)
        raise InvalidRequestError(f"no target of chain {router.model!r} ({names}) has raw text completion "
                                  "(/v1/completions)",
                                  hint="use /v1/chat/completions, or route this model to a llama.cpp server, "
                                       "LM Studio, Ollama or the local engine")
    return slots


def _failed(slot: Slot, exc: Exception, errors: list[str]) -> None:
    verdict = classify(exc)
    slot.failed(verdict, exc)
    if not verdict.fall_back:
        raise exc
    errors.append(f"{slot.target.name}: {type(exc).__name__}: {exc}")


def _exhausted(router: Router, errors: list[str]) -> MindgateError:
    return RoutingError(f"no target of chain {router.model!r} could complete the prompt: {'; '.join(errors)}",
                        hint="check the targets with `mindgate routing status`")


async def text_complete(router: Router, prompt: str, options: dict[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    for slot in _candidates(router):
        if not slot.breaker.allow():
            errors.append(f"{slot.target.name}: {slot.describe()}")
            continue
        slot.requests += 1
        start = time.perf_counter()
        try:
            result = await slot.target.model.atext_complete(prompt, **options)
        except Exception as exc:
            _failed(slot, exc, errors)
            continue
        slot.succeeded(time.perf_counter() - start)
        return result
    raise _exhausted(router, errors)


async def text_stream(router: Router, prompt: str, options: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    errors: list[str] = []
    for slot in _candidates(router):
        if not slot.breaker.allow():
            errors.append(f"{slot.target.name}: {slot.describe()}")
            continue
        slot.requests += 1
        start = time.perf_counter()
        stream = aiter(slot.target.model.atext_stream(prompt, **options))
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            slot.succeeded(time.perf_counter() - start)
            return
        except Exception as exc:
            await _close(stream)
            _failed(slot, exc, errors)
            continue
        slot.succeeded(time.perf_counter() - start)
        try:
            yield first
            async for event in stream:
                yield event
        finally:
            await _close(stream)
        return
    raise _exhausted(router, errors)


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # closing a failed upstream stream; its error is handled
            await aclose()
