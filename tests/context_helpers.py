"""Long conversations for the context tests and bench: built client-side, so a 100-turn history costs one
request, not 100 model calls."""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]
SYSTEM = "You are a helpful assistant. Answer in one short sentence."
FACT = "My name is Zorblax and my dog is called Biscuit."
QUESTION = "What is my dog called?"
_TOPICS = ["tea", "rivers", "chess", "bread", "clouds", "maps", "violins", "bees", "trains", "glass", "salt",
           "owls", "copper", "tides", "paper", "lamps"]


def turn(i: int) -> list[Message]:
    """Turn ``i`` (>= 2): a terse question and answer (a turn's size does not matter here, its count does);
    every 7th turn the answer goes through a tool call."""
    topic = _TOPICS[i % len(_TOPICS)]
    user: Message = {"role": "user", "content": f"Q{i}?"}
    if i % 7:
        return [user, {"role": "assistant", "content": f"A{i}."}]
    call_id = f"call_{i}"
    call: Message = {"role": "assistant", "content": "Looking it up.", "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": topic})}}]}
    return [user, call, {"role": "tool", "tool_call_id": call_id, "content": f"{topic} {i}"},
            {"role": "assistant", "content": f"A{i}."}]


def history(turns: int, *, fact: bool = True) -> list[Message]:
    """System prompt, turn 1 (states :data:`FACT` when ``fact``), then turns 2..``turns`` (each complete)."""
    first: list[Message] = ([{"role": "user", "content": FACT}, {"role": "assistant", "content": "Nice to meet you!"}]
                            if fact else turn(1))
    out: list[Message] = [{"role": "system", "content": SYSTEM}, *first]
    for i in range(2, turns + 1):
        out += turn(i)
    return out


def check_tool_pairs(messages: list[Message]) -> None:
    """Every tool result follows the assistant message that called it, and every call has its results."""
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            callers = [m for m in messages[:i] if any(c["id"] == message["tool_call_id"]
                                                      for c in m.get("tool_calls") or [])]
            assert callers, f"tool result {message['tool_call_id']} lost its call"
        for call in message.get("tool_calls") or []:
            assert any(m.get("tool_call_id") == call["id"] for m in messages[i + 1:]), \
                f"tool call {call['id']} lost its result"
