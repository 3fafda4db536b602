"""The threads memory searches run in: bounded, and below the event loop in the CPU scheduler's eyes.

A search is CPU work in the store (sqlite-vec's scan, FTS5, PostgreSQL's client side) plus Python that
holds the GIL (building records). Run in the default executor, every concurrent search adds runnable
threads, and on a machine with few cores the event loop thread (which answers ``/healthz``, accepts
connections and streams tokens) waits behind them for a core and for the GIL. So searches get their own
pool of :func:`search_threads` threads (by default one fewer than the usable cores, at least one: a core
stays free for the loop), and on Linux each of its threads lowers its own scheduling priority by
:data:`NICE_INCREMENT`, so when cores are short the scheduler runs the loop first. A search waits for a
free thread in FIFO order; throughput under saturation drops by about what the spared core would have
added.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

NICE_INCREMENT = 5


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def search_threads(configured: int | None = None) -> int:
    """``configured``, or one fewer than the usable cores (at least one)."""
    return configured if configured is not None else max(1, usable_cores() - 1)


def _lower_own_priority() -> None:
    if sys.platform.startswith("linux"):  # there, a thread id names one thread for setpriority
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE_INCREMENT)


class SearchPool:
    """A lazily started thread pool of ``threads`` low-priority threads for search work."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = search_threads(threads)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="mindgate-search",
                                                    initializer=_lower_own_priority)
            return self._executor

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a search thread, with the caller's context variables."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool(), call)

    def close(self) -> None:
        """Stop the threads once the work already handed to them is done."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
