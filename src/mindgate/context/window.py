"""Fit a conversation into a model's context window.

``budget = context window - max output tokens - reserve`` (:func:`token_budget`); the reserve absorbs what
counting cannot see (a template's default system prompt, the estimate's rare undercount).

Strategies:

* ``sliding_window`` (:func:`sliding_window`): keeps the leading system message(s), then the longest run of
  most recent turns that fits. The kept run starts on a user message, and an assistant message with
  ``tool_calls`` is never separated from the tool results that follow it (a ``tool`` message always stays
  with the message before it). A conversation that fits is returned unchanged.
* ``summarize`` (:class:`Summarizer`): the same window over a smaller budget, and the turns that fall out
  are summarised by a (small) chat model into a running summary, kept as a system message right after the
  system prompt. Summaries are built progressively, chunk by chunk (each chunk fits the summarising
  model's context), and cached by the exact turns they cover, so a growing conversation only summarises
  its newest dropped turns.

Memories injected by the memory layer have their own budget: :func:`trim_memories`.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mindgate.context.tokens import DEFAULT_ESTIMATOR, TokenCounter, TokenEstimator
from mindgate.errors import ConfigurationError, ContextOverflowError
from mindgate.providers.base import message_text

if TYPE_CHECKING:
    from mindgate.providers.base import ChatModel

Message = dict[str, Any]
CountFn = Callable[[Message], int]
Strategy = Literal["sliding_window", "summarize"]
SUMMARY_PREFIX = "Summary of the earlier conversation:"
_SYSTEM_ROLES = ("system", "developer")


def token_budget(context_length: int, max_output_tokens: int, reserve: int = 64) -> int:
    """Prompt tokens available: context window minus the reply's room minus a reserve."""
    budget = context_length - max_output_tokens - reserve
    if budget <= 0:
        raise ContextOverflowError(
            f"no room for a prompt: context {context_length} - max output {max_output_tokens} - reserve {reserve} "
            f"= {budget} tokens", needed=max_output_tokens + reserve, available=context_length,
            hint="lower max_tokens or the reserve, or use a model with a larger context")
    return budget


def split_system(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """(leading system/developer messages, the rest)."""
    i = 0
    while i < len(messages) and messages[i].get("role") in _SYSTEM_ROLES:
        i += 1
    return list(messages[:i]), list(messages[i:])


def turn_units(messages: Sequence[Message]) -> list[list[Message]]:
    """Messages grouped so a window never splits a group: a ``tool`` message joins the group before it,
    which keeps an assistant's ``tool_calls`` with all of their results."""
    units: list[list[Message]] = []
    for message in messages:
        if message.get("role") == "tool" and units:
            units[-1].append(message)
        else:
            units.append([message])
    return units


def sliding_window(messages: Sequence[Message], budget: int,
                   count: CountFn = DEFAULT_ESTIMATOR.message_tokens) -> list[Message]:
    """The system prompt plus the longest suffix of whole turns that starts on a user message and keeps the
    total of ``count`` within ``budget``. Raises :class:`ContextOverflowError` when even the system prompt
    plus the last user turn (and what follows it) does not fit."""
    system, rest = split_system(messages)
    system_tokens = sum(count(m) for m in system)
    unit_list = turn_units(rest)
    unit_tokens = [sum(count(m) for m in unit) for unit in unit_list]
    if system_tokens + sum(unit_tokens) <= budget:
        return list(messages)
    available = budget - system_tokens
    best: int | None = None
    kept = 0
    for i in range(len(unit_list) - 1, -1, -1):
        kept += unit_tokens[i]
        if kept > available:
            break
        if unit_list[i][0].get("role") == "user":
            best = i
    if best is None:
        users = [i for i, unit in enumerate(unit_list) if unit[0].get("role") == "user"]
        tail = sum(unit_tokens[users[-1]:]) if users else sum(unit_tokens)
        raise ContextOverflowError(
            f"the conversation does not fit {budget} tokens even trimmed: the system prompt takes {system_tokens} "
            f"and the last user turn with what follows takes {tail}", needed=system_tokens + tail,
            available=budget, hint="shorten the last message or the system prompt, or use a larger context")
    return system + [m for unit in unit_list[best:] for m in unit]


def trim_memories(memories: Sequence[str], budget: int, *, count: Callable[[str], int] = DEFAULT_ESTIMATOR.text_tokens,
                  per_item: int = 2) -> list[str]:
    """The memories (best first) that fit ``budget`` tokens, in their order; one that does not fit is left
    out and smaller ones after it may still go in. ``per_item`` covers a bullet and a newline each."""
    kept: list[str] = []
    used = 0
    for memory in memories:
        cost = count(memory) + per_item
        if used + cost <= budget:
            kept.append(memory)
            used += cost
    return kept


_SUMMARY_SYSTEM = ("You summarise conversations for an assistant that cannot see them. Write a short, factual "
                   "summary in plain sentences: facts the user stated, what was asked and answered, decisions, "
                   "open questions. No preamble.")


def _transcript(turns: Sequence[Message], limit_chars: int) -> str:
    lines = []
    for message in turns:
        text = " ".join(message_text(message).split())
        if len(text) > limit_chars:
            text = text[:limit_chars] + " ..."
        lines.append(f"{message.get('role', 'user')}: {text}")
    return "\n".join(lines)


def _digest(turns: Sequence[Message]) -> str:
    return hashlib.sha256(json.dumps(list(turns), sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Summarizer:
    """Progressive summaries of dropped turns by ``model`` (a small, fast chat model).

    ``max_summary_tokens`` caps each summary; ``chunk_tokens`` (default: what the model's context leaves
    after the instructions, the previous summary and the reply) caps the turns summarised per call.
    ``calls`` counts model calls (cache hits make none).
    """

    model: ChatModel
    max_summary_tokens: int = 200
    chunk_tokens: int | None = None
    estimator: TokenEstimator = DEFAULT_ESTIMATOR
    cache_size: int = 256
    calls: int = 0
    _cache: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def _chunk_budget(self) -> int:
        if self.chunk_tokens is not None:
            return self.chunk_tokens
        context = self.model.context_length or 2048
        overhead = self.estimator.text_tokens(_SUMMARY_SYSTEM) + 64
        return max(128, context - overhead - 2 * self.max_summary_tokens)

    def chunk_ends(self, turns: Sequence[Message]) -> list[int]:
        """End indexes of greedy chunks (deterministic for a given prefix, so cached chunks stay valid)."""
        budget = self._chunk_budget()
        ends: list[int] = []
        used = 0
        for i, message in enumerate(turns):
            cost = min(self.estimator.message_tokens(message), budget)
            if used and used + cost > budget:
                ends.append(i)
                used = 0
            used += cost
        ends.append(len(turns))
        return ends

    async def summarize(self, turns: Sequence[Message]) -> str:
        """A summary of ``turns`` (oldest first), built chunk by chunk on the previous chunk's summary."""
        summary = ""
        start = 0
        for end in self.chunk_ends(turns):
            key = _digest(turns[:end])
            cached = self._cache.get(key)
            if cached is None:
                cached = await self._summarize_chunk(summary, turns[start:end])
                self._cache[key] = cached
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
            summary, start = cached, end
        return summary

    async def _summarize_chunk(self, previous: str, turns: Sequence[Message]) -> str:
        limit_chars = max(200, self._chunk_budget() * 3 // max(1, len(turns)))
        prompt = (f"Summary so far:\n{previous}\n\n" if previous else "") + (
            f"Conversation:\n{_transcript(turns, limit_chars)}\n\nWrite the updated summary.")
        self.calls += 1
        response = await self.model.acomplete([{"role": "system", "content": _SUMMARY_SYSTEM},
                                               {"role": "user", "content": prompt}],
                                              max_tokens=self.max_summary_tokens, temperature=0.0)
        text = " ".join((response.content or "").split())
        if not text:  # a model that returns nothing still must not lose the turns: keep an extract
            text = " ".join(filter(None, [previous, _transcript(turns, 160).replace("\n", " ")]))
        return self._capped(text)

    def _capped(self, text: str) -> str:
        while (tokens := self.estimator.text_tokens(text)) > self.max_summary_tokens:
            text = text[: max(1, len(text) * self.max_summary_tokens // tokens - 8)].rstrip() + " ..."
        return text


@dataclass
class ContextWindow:
    """Keeps prompts for one model within ``token_budget(context_length, max_output_tokens, reserve)``.

    ``await window.afit(messages, model)`` returns the messages to send: unchanged when they fit (counted
    with ``model``'s tokenizer when it has one), else trimmed by ``strategy``. The result is checked with
    the same count and trimmed further if the estimate was low.
    """

    context_length: int
    max_output_tokens: int = 512
    reserve: int = 64
    strategy: Strategy = "sliding_window"
    summarizer: Summarizer | None = None
    counter: TokenCounter = field(default_factory=TokenCounter)

    def __post_init__(self) -> None:
        if self.strategy not in ("sliding_window", "summarize"):
            raise ConfigurationError(f"unknown context strategy {self.strategy!r}",
                                     hint="use sliding_window or summarize")
        if self.strategy == "summarize" and self.summarizer is None:
            raise ConfigurationError("the summarize strategy needs a summarizer",
                                     hint="pass summarizer=Summarizer(small_chat_model)")

    @property
    def budget(self) -> int:
        return token_budget(self.context_length, self.max_output_tokens, self.reserve)

    async def afit(self, messages: Sequence[Message], model: ChatModel | None = None) -> list[Message]:
        budget = self.budget
        counted = await self.counter.count(messages, model)
        if counted.tokens <= budget:
            return list(messages)
        estimator = self.counter.estimator
        target = budget - estimator.per_prompt
        for _ in range(3):
            fitted = await self._trim(messages, target)
            counted = await self.counter.count(fitted, model)
            if counted.tokens <= budget:
                return fitted
            target -= counted.tokens - budget
        raise ContextOverflowError(f"could not fit the conversation into {budget} tokens (still {counted.tokens})",
                                   needed=counted.tokens, available=budget,
                                   hint="shorten the last message or raise the reserve")

    def fit(self, messages: Sequence[Message], model: ChatModel | None = None) -> list[Message]:
        from mindgate._sync import run_sync

        return run_sync(self.afit(messages, model))

    async def _trim(self, messages: Sequence[Message], target: int) -> list[Message]:
        count = self.counter.estimator.message_tokens
        if self.strategy == "sliding_window" or self.summarizer is None:
            return sliding_window(messages, target, count)
        summary_room = self.summarizer.max_summary_tokens + count({"role": "system", "content": SUMMARY_PREFIX})
        kept = sliding_window(messages, target - summary_room, count)
        system, rest = split_system(messages)
        dropped = rest[: len(rest) - (len(kept) - len(system))]
        if not dropped:
            return kept
        summary = await self.summarizer.summarize(dropped)
        return [*system, {"role": "system", "content": f"{SUMMARY_PREFIX} {summary}"}, *kept[len(system):]]
