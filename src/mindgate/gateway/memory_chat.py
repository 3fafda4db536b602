"""Memory-augmented chat: retrieve before the call, remember after the answer.

A chat request names a user with the OpenAI ``user`` field or the ``X-Mindgate-User`` header
(``X-Mindgate-Agent`` / ``X-Mindgate-Run`` narrow the scope). Before the model is called, the memories
most relevant to the last user message are injected as a system message, at most
``memory.inject_limit`` of them and within ``memory.inject_token_budget`` tokens. After the answer has
been sent, the new turn (the trailing user messages and the answer) goes to a :class:`MemoryWriter`,
which adds it to memory in the background: no added latency, failures retried and then logged with the
request id and counted, and the queue drained on shutdown. ``"memory": false`` in the body or
``X-Mindgate-Memory: off`` turns all of this off for one request.

The same functions serve ``mindgate chat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from mindgate.config import MemorySettings
from mindgate.errors import InvalidRequestError, MindgateError
from mindgate.gateway.auth import Principal
from mindgate.gateway.observability import Metrics
from mindgate.providers.base import ChatModel

log = logging.getLogger("mindgate.gateway.memory")

USER_HEADER = "x-mindgate-user"
AGENT_HEADER = "x-mindgate-agent"
RUN_HEADER = "x-mindgate-run"
SWITCH_HEADER = "x-mindgate-memory"
_OFF = {"off", "false", "0", "no", "disabled"}
MAX_ID = 256
LLMFor = Callable[[ChatModel], ChatModel]
INJECT_HEADER = "Relevant long-term memories about the user (from earlier conversations):"


class ScopeArgs(TypedDict, total=False):
    """The scope keyword arguments of the Memory API."""

    user_id: str
    agent_id: str
    run_id: str


def scope_args(user_id: str | None, agent_id: str | None, run_id: str | None) -> ScopeArgs:
    """The ids that are set, as Memory API keyword arguments."""
    out = ScopeArgs()
    if user_id is not None:
        out["user_id"] = user_id
    if agent_id is not None:
        out["agent_id"] = agent_id
    if run_id is not None:
        out["run_id"] = run_id
    return out


@dataclass(frozen=True)
class ChatScope:
    """Whose memories a chat reads and writes."""

    user_id: str
    agent_id: str | None = None
    run_id: str | None = None

    def kwargs(self) -> ScopeArgs:
        return scope_args(self.user_id, self.agent_id or None, self.run_id or None)


def chat_scope(headers: Mapping[str, str], body_user: str | None, body_memory: bool | None,
               principal: Principal | None, *, enabled: bool) -> ChatScope | None:
    """The memory scope of a chat request, or None when memory is off for it.

    The acting user (header first, then ``user``; a key bound to one user acts for it by default) is
    checked against the key's users even when memory is off: a key never acts for another user.
    """
    user = (headers.get(USER_HEADER) or "").strip() or body_user
    for name, value in ((USER_HEADER, user), (AGENT_HEADER, headers.get(AGENT_HEADER)),
                        (RUN_HEADER, headers.get(RUN_HEADER))):
        if value is not None and len(value) > MAX_ID:
            raise InvalidRequestError(f"{name} is {len(value)} characters long; the limit is {MAX_ID}")
    if principal is not None:
        if user is None:
            user = principal.sole_user
        if user is not None or principal.users is not None:
            principal.check_user(user)
    switched_off = body_memory is False or headers.get(SWITCH_HEADER, "").strip().lower() in _OFF
    if not enabled or switched_off or not user:
        return None
    agent = (headers.get(AGENT_HEADER) or "").strip() or None
    run = (headers.get(RUN_HEADER) or "").strip() or None
    return ChatScope(user, agent, run)


def text_of(content: Any) -> str:
    """The text of a message's content (string, or the text parts of a content-part list)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token for English), for budgets only."""
    return len(text) // 4 + 1


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def memory_block(memories: Sequence[str], token_budget: int) -> tuple[str, int]:
    """The system text listing ``memories`` (in order) that fits ``token_budget``; and how many fit."""
    used = estimate_tokens(INJECT_HEADER)
    lines: list[str] = []
    for text in memories:
        line = f"- {' '.join(text.split())}"
        cost = estimate_tokens(line)
        if used + cost > token_budget:
            break
        lines.append(line)
        used += cost
    return (INJECT_HEADER + "\n" + "\n".join(lines), len(lines)) if lines else ("", 0)


def with_memories(messages: list[dict[str, Any]], block: str) -> list[dict[str, Any]]:
    """``messages`` with ``block`` added to the leading system message, or as a new one in front.

    Merging keeps a single system message, which many local chat templates require."""
    if not block:
        return messages
    first = messages[0] if messages else None
    if first is not None and first.get("role") in ("system", "developer") and isinstance(first.get("content"), str):
        return [{**first, "content": f"{first['content']}\n\n{block}"}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


async def inject_memories(memory: Any, messages: list[dict[str, Any]], scope: ChatScope,
                          settings: MemorySettings) -> tuple[list[dict[str, Any]], list[str]]:
    """Search memory for the last user message and add what fits to the prompt.

    Returns the messages to send and the ids of the injected memories."""
    query = last_user_text(messages).strip()
    if not query or settings.inject_limit == 0 or settings.inject_token_budget == 0:
        return messages, []
    found = await memory.search(query[:10_000], limit=settings.inject_limit, **scope.kwargs())
    results = list(found.get("results", []))
    block, count = memory_block([str(r.get("memory", "")) for r in results], settings.inject_token_budget)
    return with_memories(messages, block), [str(r.get("id")) for r in results[:count]]


def new_turn(messages: Sequence[Mapping[str, Any]], answer: str | None) -> list[dict[str, Any]]:
    """What to remember from one exchange: the user messages after the last assistant message, and the
    answer. Earlier turns were remembered by earlier requests; system messages are instructions."""
    start = 0
    for index, message in enumerate(messages):
        if message.get("role") == "assistant":
            start = index + 1
    turn = [{"role": "user", "content": text_of(m.get("content"))}
            for m in messages[start:] if m.get("role") == "user" and text_of(m.get("content")).strip()]
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

    Failures are retried (``retries`` times, with backoff) and then logged at ERROR with the request id
    and counted in ``mindgate_memory_writes_total{outcome="failed"}``; a full queue is logged and counted
    as ``dropped``. :meth:`stop` drains what is queued before returning (within ``drain_timeout``)."""

    def __init__(self, memory: Any, metrics: Metrics, *, max_queue: int = 1000, retries: int = 2,
                 backoff: float = 0.5, drain_timeout: float = 30.0) -> None:
        self.memory = memory
        self.metrics = metrics
        self.retries = retries
        self.backoff = backoff
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
        ``llm_for`` turns the memory's LLM into the one to use for this turn (the gateway wraps it for the
        calling key: :mod:`mindgate.gateway.on_behalf`)."""
        if not messages:
            return False
        self.start()
        try:
            self._queue.put_nowait(_Job(messages, scope, request_id, llm_for))
        except asyncio.QueueFull:
            self.metrics.memory_writes["dropped"] += 1
            log.error("memory write queue is full (%d); the turn of request %s for user %s was not remembered",
                      self._queue.maxsize, request_id, scope.user_id)
            return False
        self.metrics.memory_writes["queued"] += 1
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
        for attempt in range(self.retries + 1):
            try:
                llm = job.llm_for(self.memory.llm) if job.llm_for is not None else None
                result = await self.memory.add(job.messages, **job.scope.kwargs(), infer=True, llm=llm)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retryable = isinstance(exc, MindgateError) and getattr(exc, "retryable", True) is not False
                if retryable and attempt < self.retries:
                    await asyncio.sleep(self.backoff * 2 ** attempt)
                    continue
                self.metrics.memory_writes["failed"] += 1
                log.error("remembering the turn of request %s for user %s failed after %d attempt(s): %s",
                          job.request_id, job.scope.user_id, attempt + 1, exc)
                return
            events = [r.get("event") for r in (result or {}).get("results", [])]
            self.metrics.memory_writes["ok"] += 1
            log.info("remembered the turn of request %s for user %s: %s", job.request_id, job.scope.user_id,
                     ", ".join(str(e) for e in events) or "nothing new")
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
            self.metrics.memory_writes["dropped"] += self.pending
            log.error("shutting down with %d turn(s) not yet remembered (drain timed out after %.0fs)",
                      self.pending, self.drain_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
