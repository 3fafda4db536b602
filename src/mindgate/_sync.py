"""Run coroutines from synchronous code: the thin sync facade over the async-first API.

One daemon thread per process runs an event loop; sync methods submit coroutines to it and wait. This
works both from plain scripts and from code already inside a running event loop (where
``asyncio.run`` would fail), and it keeps pooled HTTP connections alive across sync calls because they
all live on the same loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="mindgate-sync", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and return its result (exceptions propagate)."""
    loop = _background_loop()
    if threading.current_thread().name == "mindgate-sync":
        coro.close()
        raise RuntimeError("a mindgate sync method was called from inside the sync facade's own loop; "
                           "use the async method (a* name) there")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code, one item at a time, on the background loop."""
    loop = _background_loop()
    try:
        while True:
            try:
                step: Coroutine[Any, Any, T] = agen.__anext__()  # type: ignore[assignment]
                yield asyncio.run_coroutine_threadsafe(step, loop).result()
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            asyncio.run_coroutine_threadsafe(aclose(), loop).result()
