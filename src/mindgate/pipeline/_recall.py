"""Stage 2, recall memories: before the model is called, the memories most relevant to the last user
message join the prompt as a system message, at most ``memory.inject_limit`` of them and within
``memory.inject_token_budget`` tokens (counted with the one token estimator, :mod:`mindgate.context._tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mindgate.config import MemorySettings
from mindgate.context._tokens import DEFAULT_ESTIMATOR, TokenEstimator
from mindgate.pipeline._scope import ChatScope
from mindgate.providers._base import content_text

Message = dict[str, Any]
INJECT_HEADER = "Relevant long-term memories about the user (from earlier conversations):"


def last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def memory_block(memories: Sequence[str], token_budget: int,
                 estimator: TokenEstimator = DEFAULT_ESTIMATOR) -> tuple[str, int]:
    """The system text listing ``memories`` (in order) that fits ``token_budget``; and how many fit."""
    used = estimator.text_tokens(INJECT_HEADER)
    lines: list[str] = []
    for text in memories:
        line = f"- {' '.join(text.split())}"
        cost = estimator.text_tokens(line) + 1  # the newline joining it
        if used + cost > token_budget:
            break
        lines.append(line)
        used += cost
    return (INJECT_HEADER + "\n" + "\n".join(lines), len(lines)) if lines else ("", 0)


def with_memories(messages: list[Message], block: str) -> list[Message]:
    """``messages`` with ``block`` added to the leading system message, or as a new one in front.

    Merging keeps a single system message, which many local chat templates require."""
    if not block:
        return messages
    first = messages[0] if messages else None
    if first is not None and first.get("role") in ("system", "developer") and isinstance(first.get("content"), str):
        return [{**first, "content": f"{first['content']}\n\n{block}"}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


async def inject_memories(memory: Any, messages: list[Message], scope: ChatScope,
                          settings: MemorySettings) -> tuple[list[Message], list[str]]:
    """Search memory for the last user message and add what fits to the prompt.

    Returns the messages to send and the ids of the injected memories. Errors propagate (the pipeline
    decides that a failed search degrades to an un-augmented answer)."""
    query = last_user_text(messages).strip()
    if not query or settings.inject_limit == 0 or settings.inject_token_budget == 0:
        return messages, []
    found = await memory.search(query[:10_000], limit=settings.inject_limit, **scope.kwargs())
    results = list(found.get("results", []))
    block, count = memory_block([str(r.get("memory", "")) for r in results], settings.inject_token_budget)
    return with_memories(messages, block), [str(r.get("id")) for r in results[:count]]
