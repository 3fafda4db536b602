"""Searches run in their own bounded pool of threads that the CPU scheduler ranks below the event loop
(so the loop keeps answering while searches saturate the cores): sized from the cores or
``memory.search_threads``, never more store calls at once than threads, context variables carried over.
Real SQLite store and MiniLM; the store is observed, not replaced."""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mindgate.config import MemorySettings, MindgateConfig
from mindgate.memory._memory import AsyncMemory
from mindgate.memory._search_pool import NICE_INCREMENT, SearchPool, search_threads, usable_cores
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder

CALLER = contextvars.ContextVar("caller", default="")


class ObservedStore(SQLiteStore):
    """The real SQLite store, noting which thread each search ran in and how many ran at once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: set[str] = set()
        self.running = self.most = 0
        self._count = threading.Lock()

    def _observe(self, call: Any, *args: Any) -> Any:
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(0.02)  # long enough for concurrent searches to overlap if the pool let them
            return call(*args)
        finally:
            with self._count:
                self.running -= 1

    def vector_candidates(self, *args: Any) -> Any:
        return self._observe(super().vector_candidates, *args)

    def text_candidates(self, *args: Any) -> Any:
        return self._observe(super().text_candidates, *args)


def test_the_pool_is_sized_from_the_cores_unless_configured() -> None:
    assert search_threads() == max(1, usable_cores() - 1)
    assert search_threads(3) == 3
    assert MindgateConfig.from_dict({"memory": {"search_threads": 2}}).memory.search_threads == 2
    with pytest.raises(Exception, match="search_threads"):
        MindgateConfig.from_dict({"memory": {"search_threads": 0}})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_search_threads_rank_below_the_caller_and_see_its_context_variables() -> None:
    pool = SearchPool(1)

    def inside() -> tuple[int, str]:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), CALLER.get()

    async def call() -> tuple[int, str]:
        CALLER.set("request-7")
        return await pool.run(inside)

    try:
        nice, seen = asyncio.run(call())
    finally:
        pool.close()
    assert seen == "request-7"
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + NICE_INCREMENT)


def test_concurrent_searches_never_run_more_store_calls_than_threads(tmp_path: Path, minilm: Embedder) -> None:
    store = ObservedStore(tmp_path / "memory.db")
    memory = AsyncMemory(embedder=minilm, store=store, settings=MemorySettings(search_threads=2))

    async def scenario() -> list[dict[str, Any]]:
        await memory.add("Alice keeps bees on the roof.", user_id="alice", infer=False)
        try:
            return await asyncio.gather(*(memory.search("who keeps bees", user_id="alice") for _ in range(6)))
        finally:
            await memory.close()

    results = asyncio.run(scenario())
    assert all(r["results"][0]["memory"] == "Alice keeps bees on the roof." for r in results)
    assert store.most == 2  # 6 searches x 2 store calls, two at a time
    assert store.threads and all(name.startswith("mindgate-search") for name in store.threads)
