"""Context windows: sliding-window invariants (property-based), the memory budget, and summarisation with
the real in-process SmolLM2 (format-level assertions only: a 135M model's words are not asserted)."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures_servers import LlamaServer
from mindgate.context.tokens import DEFAULT_ESTIMATOR
from mindgate.context.window import (
    SUMMARY_PREFIX,
    ContextWindow,
    Summarizer,
    sliding_window,
    split_system,
    token_budget,
    trim_memories,
    turn_units,
)
from mindgate.errors import ConfigurationError, ContextOverflowError
from mindgate.providers.local import LlamaCppChatModel
from routing_helpers import chat_model
from shared_data import LONGMEMEVAL_ORACLE, shared_file

Message = dict[str, Any]
count = DEFAULT_ESTIMATOR.message_tokens
LONGMEMEVAL = shared_file(LONGMEMEVAL_ORACLE)

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


def test_context_window_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError, match="unknown context strategy"):
        ContextWindow(2048, strategy="truncate")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a summarizer"):
        ContextWindow(2048, strategy="summarize")


# -- with real models ---------------------------------------------------------------------------------------


def real_conversation(turns: int, max_chars: int = 700) -> list[Message]:
    """A system prompt plus alternating user/assistant turns from LongMemEval (turns up to ``max_chars``)."""
    with gzip.open(LONGMEMEVAL) as file:
        questions = json.loads(file.read())
    out: list[Message] = [{"role": "system", "content": "You are a helpful assistant with a good memory."}]
    for question in questions:
        for session in question["haystack_sessions"]:
            for user, assistant in zip(session[::2], session[1::2], strict=False):
                if user["role"] == "user" and len(user["content"]) <= max_chars >= len(assistant["content"]):
                    out += [{"role": "user", "content": user["content"]},
                            {"role": "assistant", "content": assistant["content"]}]
                    if len(out) > turns:
                        return out[: turns + 1]
    raise AssertionError("not enough short turns")


def test_sliding_window_with_the_servers_tokenizer_fits_and_is_accepted(llama_server: LlamaServer) -> None:
    model = chat_model(llama_server.base_url)
    conversation = [*real_conversation(30), {"role": "user", "content": "What did I tell you first?"}]
    window = ContextWindow(context_length=512, max_output_tokens=16, reserve=32)
    fitted = window.fit(conversation, model)
    assert len(fitted) < len(conversation) and fitted[0] == conversation[0] and fitted[1]["role"] == "user"
    assert fitted[-1] == conversation[-1]
    counted = model.count_tokens(fitted)
    assert counted is not None and counted <= window.budget
    answer = model.complete(fitted, max_tokens=8)  # the server takes it without a context error
    assert answer.usage.prompt_tokens == counted


@pytest.fixture
def small_model() -> Any:
    model = LlamaCppChatModel(n_ctx=1024, n_threads=1)
    yield model
    model.unload()


def test_summarize_with_the_local_model_keeps_a_running_summary(small_model: LlamaCppChatModel) -> None:
    small = small_model
    summarizer = Summarizer(small, max_summary_tokens=48, chunk_tokens=450)
    window = ContextWindow(context_length=900, max_output_tokens=64, reserve=32, strategy="summarize",
                           summarizer=summarizer)
    conversation = real_conversation(12)
    assert DEFAULT_ESTIMATOR.prompt_tokens(conversation) > window.budget

    fitted = asyncio.run(window.afit(conversation))
    assert fitted[0] == conversation[0]
    summary = fitted[1]
    assert summary["role"] == "system" and summary["content"].startswith(SUMMARY_PREFIX)
    assert len(summary["content"]) > len(SUMMARY_PREFIX) + 10
    assert DEFAULT_ESTIMATOR.text_tokens(summary["content"]) <= 48 + DEFAULT_ESTIMATOR.text_tokens(SUMMARY_PREFIX) + 2
    recent = fitted[2:]
    assert recent[0]["role"] == "user" and recent == conversation[len(conversation) - len(recent):]
    assert DEFAULT_ESTIMATOR.prompt_tokens(fitted) <= window.budget
    calls = summarizer.calls
    assert calls >= 2  # the dropped turns span several chunks, summarised one on top of the other

    assert asyncio.run(window.afit(conversation)) == fitted  # same history: all from the cache
    assert summarizer.calls == calls

    longer = conversation + real_conversation(16)[13:17]
    refitted = asyncio.run(window.afit(longer))
    assert refitted[1]["content"].startswith(SUMMARY_PREFIX) and refitted[2]["role"] == "user"
    assert DEFAULT_ESTIMATOR.prompt_tokens(refitted) <= window.budget
    dropped = longer[1: len(longer) - len(refitted) + 2]
    chunks = len(summarizer.chunk_ends(dropped))
    assert 1 <= summarizer.calls - calls < chunks  # earlier chunks came from the cache, not the model
