"""Stage 6, write the new turn to memory: after the answer, the new turn (the trailing user messages and
the answer) goes to a :class:`MemoryWriter`, which adds it to memory in the background: no added latency,
failures retried and then logged with the request id and counted, and the queue drained on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mindgate.errors import MindgateError
from mindgate.pipeline._scope import ChatScope
from mindgate.providers._base import ChatModel, content_text
from mindgate.routing._retry import RetryPolicy

log = logging.getLogger("mindgate.pipeline.memory")

LLMFor = Callable[[ChatModel], ChatModel]
"""Turns the memory's LLM into the one a write uses (the gateway wraps it for the calling API key, so the
key's model binding and token limit cover the extraction call: :mod:`mindgate.gateway._on_behalf`)."""

ACTING_LLM: ContextVar[LLMFor | None] = ContextVar("mindgate_acting_llm", default=None)
"""For transports whose memory writes happen deep inside another library's request handling (``/mcp``):
set for the duration of one request, read where the write is made."""


def new_turn(messages: Sequence[Mapping[str, Any]], answer: str | None) -> list[dict[str, Any]]:
    """What to remember from one exchange: the user messages after the last assistant message, and the
    answer. Earlier turns were remembered by earlier requests; system messages are instructions."""
    start = 0
    for index, message in enumerate(messages):
        if message.get("role") == "assistant":
            start = index + 1
    turn = [{"role": "user", "content": content_text(m.get("content"))}
            for m in messages[start:] if m.get("role") == "user" and content_text(m.get("content")).strip()]
    if turn and answer:
        turn.append({"role": "assistant", "content": answer})
    return turn


@dataclass
class _Job:
    messages: list[dict[str, Any]]
    scope: ChatScope
    request_id: str | None
    llm_for: LLMFor | None = None


class MemoryWriter:
    """Adds finished turns to memory from a bounded queue, one at a time, off the request path.

    Outcomes are counted in ``counts`` (``queued``, ``ok``, ``failed``, ``dropped``; the gateway passes its
    ``mindgate_memory_writes_total`` counter) and the memory events of successful writes in ``events``
    (``ADD``, ``UPDATE``, ...). Failures are retried (``retries`` times, with the routers' jittered backoff,
:class:`~mindgate.routing._retry.RetryPolicy`) and then logged at
    ERROR with the request id; a full queue is logged and counted as ``dropped``. :meth:`stop` drains
    what is queued before returning (within ``drain_timeout``)."""

    def __init__(self, memory: Any, counts: Counter[str] | None = None, *, max_queue: int = 1000,
                 retries: int = 2, backoff: float = 0.5, drain_timeout: float = 30.0) -> None:
        self.memory = memory
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.events: Counter[str] = Counter()
        self.retry = RetryPolicy(retries=retries, backoff_base=backoff, backoff_max=max(backoff * 2 ** retries, 1.0))
        self.drain_timeout = drain_timeout
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    @property
    def pending(self) -> int:
        """Turns queued or being written."""
        return self._queue.qsize() + int(self._busy)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mindgate-memory-writer")

    def submit(self, messages: list[dict[str, Any]], scope: ChatScope, request_id: str | None = None, *,
               llm_for: LLMFor | None = None) -> bool:
        """Queue one turn; False (logged, counted) when there is nothing to remember or the queue is full.
        ``llm_for`` picks the model the write's extraction uses (the memory's own LLM when None)."""
        if not messages:
            return False
        self.start()
        try:
            self._queue.put_nowait(_Job(messages, scope, request_id, llm_for))
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            log.error("memory write queue is full (%d); the turn of request %s for user %s was not remembered",
                      self._queue.maxsize, request_id, scope.user_id)
            return False
        self.counts["queued"] += 1
        return True

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            self._busy = True
            try:
                await self._write(job)
            finally:
                self._busy = False
                self._queue.task_done()

    async def _write(self, job: _Job) -> None:
        for attempt in range(self.retry.retries + 1):
            try:
                llm = job.llm_for(self.memory.llm) if job.llm_for is not None else None
                result = await self.memory.add(job.messages, **job.scope.kwargs(), infer=True, llm=llm)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retryable = isinstance(exc, MindgateError) and getattr(exc, "retryable", True) is not False
                delay = self.retry.delay(attempt, exc) if retryable else None
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
                self.counts["failed"] += 1
                log.error("remembering the turn of request %s for user %s failed after %d attempt(s): %s",
                          job.request_id, job.scope.user_id, attempt + 1, exc)
                return
            events = [str(r.get("event")) for r in (result or {}).get("results", [])]
            self.events.update(events)
            self.counts["ok"] += 1
            log.info("remembered the turn of request %s for user %s: %s", job.request_id, job.scope.user_id,
                     ", ".join(events) or "nothing new")
            return

    async def join(self) -> None:
        """Wait until every queued turn has been written (or has failed)."""
        await self._queue.join()

    async def stop(self) -> None:
        """Drain the queue (up to ``drain_timeout``), then stop the worker; leftovers are logged."""
        if self._task is None:
            return
        if self.pending:
            log.info("remembering %d pending turn(s) before stopping (up to %.0fs)", self.pending,
                     self.drain_timeout)
        try:
            await asyncio.wait_for(self._queue.join(), self.drain_timeout)
        except TimeoutError:
            self.counts["dropped"] += self.pending
            log.error("shutting down with %d turn(s) not yet remembered (drain timed out after %.0fs)",
                      self.pending, self.drain_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
