"""Window geometry: sliding-window invariants (property-based), tool rounds at the cut, the budget rule and
the memory budget. The policies that use them, with real models, are in test_context_fit.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindgate.context._tokens import DEFAULT_ESTIMATOR
from mindgate.context._window import sliding_window, split_system, token_budget, trim_memories, turn_units
from mindgate.errors import ContextOverflowError

Message = dict[str, Any]
count = DEFAULT_ESTIMATOR.message_tokens

# -- conversations for the properties ---------------------------------------------------------------------

words = st.lists(st.sampled_from(["the", "cat", "sat", "on", "a", "mat", "42", "Lisbon", "code", "!"]),
                 min_size=0, max_size=40).map(" ".join)


@st.composite
def tool_round(draw: st.DrawFn, index: int) -> list[Message]:
    ids = [f"call_{index}_{i}" for i in range(draw(st.integers(1, 3)))]
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": draw(words)})}}
        for i in ids]}
    return [call, *({"role": "tool", "tool_call_id": i, "content": draw(words)} for i in ids)]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": draw(words)}
                               for _ in range(draw(st.integers(0, 2)))]
    for index in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["user", "assistant", "tools"]))
        if kind == "tools":
            messages.extend(draw(tool_round(index)))
        else:
            messages.append({"role": kind, "content": draw(words)})
    return messages


def tokens(messages: list[Message]) -> int:
    return sum(count(m) for m in messages)


def valid_starts(rest: list[Message]) -> list[int]:
    """Indexes where a kept window may start: a user message that begins a unit."""
    starts, i = [], 0
    for unit in turn_units(rest):
        if unit[0]["role"] == "user":
            starts.append(i)
        i += len(unit)
    return starts


@settings(max_examples=400, deadline=None)
@given(conversations(), st.integers(0, 600))
def test_sliding_window_invariants(messages: list[Message], budget: int) -> None:
    system, rest = split_system(messages)
    try:
        kept = sliding_window(messages, budget, count)
    except ContextOverflowError as error:
        # only when no valid window fits: every user-started suffix is over budget
        assert tokens(messages) > budget
        assert all(tokens(system) + tokens(rest[i:]) > budget for i in valid_starts(rest))
        assert error.available == budget
        return
    if tokens(messages) <= budget:
        assert kept == messages  # a conversation that fits is untouched
        return
    assert kept[:len(system)] == system  # the system prompt is kept
    tail = kept[len(system):]
    assert tail and tail == rest[len(rest) - len(tail):]  # a suffix of the conversation, in order
    assert tail[0]["role"] == "user"  # the kept window starts on a user turn
    assert tokens(kept) <= budget
    for i, message in enumerate(tail):  # a tool result never loses its call, a call never loses a result
        if message["role"] == "tool":
            assert any(message["tool_call_id"] in {c["id"] for c in m.get("tool_calls") or []} for m in tail[:i])
        for call in message.get("tool_calls") or []:
            results = [m for m in rest if m.get("tool_call_id") == call["id"]]
            assert all(r in tail for r in results)
    start = len(rest) - len(tail)
    longer = [i for i in valid_starts(rest) if i < start]
    assert all(tokens(system) + tokens(rest[i:]) > budget for i in longer)  # the longest window that fits


def test_tool_call_group_at_the_cut_is_kept_whole_or_dropped_whole() -> None:
    call: Message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]}
    messages: list[Message] = [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Weather in Oslo? " * 20},
                               call, {"role": "tool", "tool_call_id": "c1", "content": "12C and rain " * 20},
                               {"role": "assistant", "content": "It is 12C and raining."},
                               {"role": "user", "content": "Thanks!"}]
    kept = sliding_window(messages, tokens(messages) - 1, count)
    assert kept == [messages[0], messages[-1]]  # the window cannot start at the call or the tool result


def test_token_budget() -> None:
    assert token_budget(4096, 512, 64) == 3520
    with pytest.raises(ContextOverflowError, match="no room for a prompt") as caught:
        token_budget(512, 480, 64)
    assert caught.value.available == 512


def test_trim_memories_keeps_order_and_budget() -> None:
    memories = ["Alice lives in Lisbon.", "Alice " + "really " * 200 + "likes jazz.", "Alice is vegetarian.",
                "Alice has a cat named Miso."]
    costs = [DEFAULT_ESTIMATOR.text_tokens(m) + 2 for m in memories]
    kept = trim_memories(memories, costs[0] + costs[2] + costs[3])
    assert kept == [memories[0], memories[2], memories[3]]  # the long one is left out, smaller ones still fit
    assert trim_memories(memories, min(costs) - 1) == []
    assert trim_memories(memories, 10_000) == memories
