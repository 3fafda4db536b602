"""The pure parts of memory-augmented chat: who a request acts for, what fits the injection budget, how
memories join the prompt, and which part of an exchange is remembered."""

from __future__ import annotations

import pytest

from mindgate.errors import InvalidRequestError, PermissionDeniedError
from mindgate.gateway.auth import Principal
from mindgate.gateway.memory_chat import (
    INJECT_HEADER,
    ChatScope,
    chat_scope,
    estimate_tokens,
    memory_block,
    new_turn,
    with_memories,
)


def test_scope_from_header_or_user_field_and_switches() -> None:
    assert chat_scope({}, None, None, None, enabled=True) is None
    assert chat_scope({}, "ann", None, None, enabled=True) == ChatScope("ann")
    headers = {"x-mindgate-user": "bea", "x-mindgate-agent": "planner", "x-mindgate-run": "r1"}
    assert chat_scope(headers, "ann", None, None, enabled=True) == ChatScope("bea", "planner", "r1")
    assert chat_scope({}, "ann", False, None, enabled=True) is None
    assert chat_scope({"x-mindgate-memory": "OFF"}, "ann", None, None, enabled=True) is None
    assert chat_scope({}, "ann", None, None, enabled=False) is None
    with pytest.raises(InvalidRequestError, match="x-mindgate-user"):
        chat_scope({"x-mindgate-user": "u" * 300}, None, None, None, enabled=True)


def test_scope_respects_the_keys_users() -> None:
    solo = Principal("solo", users=frozenset({"ann"}))
    assert chat_scope({}, None, None, solo, enabled=True) == ChatScope("ann")  # acts for its only user
    with pytest.raises(PermissionDeniedError):
        chat_scope({}, "bea", None, solo, enabled=True)
    with pytest.raises(PermissionDeniedError):  # even with memory off, a key never acts for another user
        chat_scope({"x-mindgate-memory": "off"}, "bea", None, solo, enabled=True)
    pair = Principal("pair", users=frozenset({"ann", "bea"}))
    with pytest.raises(PermissionDeniedError, match="names none"):
        chat_scope({}, None, None, pair, enabled=True)
    assert chat_scope({}, "bea", None, pair, enabled=True) == ChatScope("bea")


def test_memory_block_keeps_order_within_the_token_budget() -> None:
    facts = ["Lives in Lisbon.", "Allergic to peanuts.", "x" * 400, "Has two cats."]
    block, count = memory_block(facts, token_budget=40)
    assert count == 2 and block.splitlines() == [INJECT_HEADER, "- Lives in Lisbon.", "- Allergic to peanuts."]
    assert estimate_tokens(block) <= 40 + 2
    assert memory_block(facts, token_budget=5) == ("", 0)  # not even the header fits
    whole, count = memory_block(facts, token_budget=10_000)
    assert count == 4 and "- Has two cats." in whole


def test_memories_join_the_leading_system_message_or_come_first() -> None:
    user = {"role": "user", "content": "hi"}
    merged = with_memories([{"role": "system", "content": "Be brief."}, user], "MEM")
    assert merged == [{"role": "system", "content": "Be brief.\n\nMEM"}, user]
    assert with_memories([user], "MEM") == [{"role": "system", "content": "MEM"}, user]
    assert with_memories([user], "") == [user]


def test_only_the_new_turn_is_remembered() -> None:
    conversation = [{"role": "system", "content": "rules"}, {"role": "user", "content": "old question"},
                    {"role": "assistant", "content": "old answer"}, {"role": "user", "content": "I moved to Oslo."},
                    {"role": "user", "content": [{"type": "text", "text": "In May."}]}]
    assert new_turn(conversation, "Nice!") == [{"role": "user", "content": "I moved to Oslo."},
                                               {"role": "user", "content": "In May."},
                                               {"role": "assistant", "content": "Nice!"}]
    assert new_turn(conversation[:3], "x") == []  # nothing new from the user
