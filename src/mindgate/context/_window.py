"""The geometry of a context window: budgets, turn units and the sliding window.

``budget = context window - max output tokens - reserve`` (:func:`token_budget`); the reserve absorbs what
counting cannot see (a template's default system prompt, the estimate's rare undercount).

:func:`sliding_window` keeps the leading system message(s), then the longest run of most recent turns that
fits. The kept run starts on a user message, and an assistant message with ``tool_calls`` is never
separated from the tool results that follow it (a ``tool`` message always stays with the message before
it, :func:`turn_units`). A conversation that fits is returned unchanged. The policies that use these
(truncate, summarize, memory) are in :mod:`mindgate.context._fit`.

Memories injected into a prompt have their own budget: :func:`trim_memories`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mindgate.context._tokens import DEFAULT_ESTIMATOR
from mindgate.errors import ContextOverflowError

Message = dict[str, Any]
CountFn = Callable[[Message], int]
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


def leading_system(messages: Sequence[Message]) -> int:
    """How many messages at the start are system/developer messages."""
    i = 0
    while i < len(messages) and messages[i].get("role") in _SYSTEM_ROLES:
        i += 1
    return i


def split_system(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """(leading system/developer messages, the rest)."""
    i = leading_system(messages)
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
