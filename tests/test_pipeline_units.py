"""The pure parts of the request pipeline: who a request acts for, what fits the memory injection budget,
how memories join the prompt, and which part of an exchange is remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindgate.context._tokens import DEFAULT_ESTIMATOR
from mindgate.errors import InvalidRequestError, PermissionDeniedError
from mindgate.gateway._auth import Principal
from mindgate.gateway._scoping import requested_scope
from mindgate.pipeline import ChatScope, new_turn, resolve_scope
from mindgate.pipeline._recall import INJECT_HEADER, memory_block, with_memories


def _scope(headers: dict[str, str], user: str | None, memory: bool | None, principal: Principal | None, *,
           enabled: bool = True) -> ChatScope | None:
    return resolve_scope(requested_scope(headers, user, memory), principal, enabled=enabled)


def test_scope_from_header_or_user_field_and_switches() -> None:
    assert _scope({}, None, None, None) is None
    assert _scope({}, "ann", None, None) == ChatScope("ann")
    headers = {"x-mindgate-user": "bea", "x-mindgate-agent": "planner", "x-mindgate-run": "r1"}
    assert _scope(headers, "ann", None, None) == ChatScope("bea", "planner", "r1")
    assert _scope({}, "ann", False, None) is None
    assert _scope({"x-mindgate-memory": "OFF"}, "ann", None, None) is None
    assert _scope({}, "ann", None, None, enabled=False) is None
    with pytest.raises(InvalidRequestError, match="x-mindgate-user"):
        _scope({"x-mindgate-user": "u" * 300}, None, None, None)
    with pytest.raises(InvalidRequestError, match="x-mindgate-run"):
        _scope({"x-mindgate-run": "r" * 300}, "ann", None, None)


def test_scope_respects_the_keys_users() -> None:
    solo = Principal("solo", users=frozenset({"ann"}))
    assert _scope({}, None, None, solo) == ChatScope("ann")  # acts for its only user
    with pytest.raises(PermissionDeniedError):
        _scope({}, "bea", None, solo)
    with pytest.raises(PermissionDeniedError):  # even with memory off, a key never acts for another user
        _scope({"x-mindgate-memory": "off"}, "bea", None, solo)
    pair = Principal("pair", users=frozenset({"ann", "bea"}))
    with pytest.raises(PermissionDeniedError, match="names none"):
        _scope({}, None, None, pair)
    assert _scope({}, "bea", None, pair) == ChatScope("bea")


def test_memory_block_keeps_order_within_the_token_budget() -> None:
    facts = ["Lives in Lisbon.", "Allergic to peanuts.", "x" * 400, "Has two cats."]
    block, count = memory_block(facts, token_budget=30)
    assert count == 2 and block.splitlines() == [INJECT_HEADER, "- Lives in Lisbon.", "- Allergic to peanuts."]
    assert DEFAULT_ESTIMATOR.text_tokens(block) <= 30  # counted with the one estimator the router uses too
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


def test_stored_responses_are_their_owners_and_expire(tmp_path: Path) -> None:
    import asyncio

    from mindgate.errors import NotFoundError
    from mindgate.memory.stores._sqlite import SQLiteStore
    from mindgate.pipeline._conversations import ResponseLog

    now = [1000.0]
    with SQLiteStore(tmp_path / "responses.db") as store:
        log = ResponseLog(store, retention_days=1, clock=lambda: now[0])

        async def run() -> None:
            await log.save({"id": "resp_a"}, "ann", [], [{"role": "user", "content": "hi"}])
            assert (await log.load("resp_a", "ann")).context == [{"role": "user", "content": "hi"}]
            for other in ("bea", None):  # another user, or a request naming none, is told it does not exist
                with pytest.raises(NotFoundError, match="no stored response"):
                    await log.load("resp_a", other)
            with pytest.raises(NotFoundError):
                await log.delete("resp_a", "bea")
            now[0] += 86_401  # past the retention
            with pytest.raises(NotFoundError, match="1 day"):
                await log.load("resp_a", "ann")
            await log.aclose()

        asyncio.run(run())
