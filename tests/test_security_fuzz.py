"""Property tests of the Python Memory API (hypothesis): random messages, metadata, filters, scope ids,
memory ids, queries, limits and thresholds, with unicode of every kind (astral planes, combining marks,
right-to-left marks, control characters, lone surrogates) and JSON of every kind (NaN, Infinity, integers
past 64 bits, nesting). Every call returns its documented shape or raises a :class:`MindgateError`: never
another exception and never a hang. What is stored reads back equal, reads never leave their scope, and the
store passes its integrity and consistency checks afterwards (``bench/crash.py``'s ``store_problems``).

Real parts: the shipped MiniLM embedder and SQLite. The examples are derandomized so that CI is
repeatable; ``FUZZ_EXAMPLES=2000`` runs a longer, random search.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mindgate.errors import MindgateError
from mindgate.memory._filters import OPERATORS
from mindgate.memory._memory import AsyncMemory, Memory
from mindgate.memory.stores._base import content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder
from test_reliability_crash import load_bench

crash = load_bench("crash")

LONG = "FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECIAL = ["", " ", "\x00", "\ud800", "a\udfffb", "\x1f", "'; DROP TABLE memories; --", '"', "NEAR(a b)", "*",
           "e\u0301", "İstanbul", "ß", "\u202egnp.exe", "😀" * 20, "\U0010ffff", "x" * 300, "null", "{}"]
any_char = st.characters(exclude_categories=())  # every code point, lone surrogates included
wild_text = st.one_of(st.text(any_char, max_size=40), st.sampled_from(SPECIAL))
good_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40).filter(str.strip)
texts = st.one_of(good_text, wild_text)


def mostly(good: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four (``one_of`` would flatten and weigh its branches equally)."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda pick: good if pick else wild)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), texts)
jsons = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                     max_leaves=8)
good_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False,
                         allow_infinity=False), good_text)
good_json = st.recursive(good_scalars, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(good_text, inner, max_size=3), max_leaves=6)
metadata = mostly(st.dictionaries(good_text.filter(lambda k: k not in ("user_id", "agent_id", "run_id")), good_json,
                                  max_size=4),
                  st.one_of(st.none(), st.dictionaries(st.one_of(texts, st.integers()), jsons, max_size=4), jsons))
users = mostly(st.sampled_from(["alice", "bob", "carol"]), st.one_of(st.none(), texts))
agents = mostly(st.one_of(st.none(), st.just("agent-1")), texts)
roles = st.sampled_from(["user", "assistant", "system", "tool", "developer", "bogus"])
wild_message = st.fixed_dictionaries({"role": roles, "content": st.one_of(texts, st.none(), st.integers())},
                                     optional={"id": jsons, "name": texts})
good_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": good_text},
                                     optional={"id": st.one_of(good_text, st.integers(0, 10**6))})
messages = mostly(st.one_of(good_text, st.lists(good_message, min_size=1, max_size=3)),
                  st.one_of(wild_text, st.lists(wild_message, max_size=3), wild_message, st.integers(), st.none()))
operators = st.one_of(st.sampled_from([*OPERATORS, *(f"${o}" for o in OPERATORS), "$regex", "like", "AND"]), texts)
fields = st.one_of(st.sampled_from(["k", "n", "tags", "user_id", "agent_id", "a.b", "x' OR 1=1"]), texts)
good_value = st.one_of(st.sampled_from(["v", "a", 3, 2.5, True, None]), good_text, st.integers(-10, 10))
good_leaf = st.dictionaries(st.sampled_from(["k", "n", "tags"]), st.one_of(
    good_value, st.dictionaries(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "contains", "icontains"]),
                                good_value.filter(lambda v: v is not None and not isinstance(v, bool)),
                                min_size=1, max_size=2),
    st.fixed_dictionaries({"in": st.lists(good_value, min_size=1, max_size=3)})), min_size=1, max_size=2)
leaf_filters = mostly(good_leaf, st.dictionaries(fields, st.one_of(jsons, st.dictionaries(operators, jsons, min_size=1,
                                                                                          max_size=2)),
                                                 min_size=1, max_size=2))
filters = st.one_of(st.none(), st.none(), st.recursive(
    leaf_filters, lambda inner: st.dictionaries(st.sampled_from(["AND", "OR", "NOT", "or"]),
                                                st.one_of(st.lists(inner, max_size=3), inner), min_size=1, max_size=2),
    max_leaves=6), jsons)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "memory.db"


@pytest.fixture(scope="module")
def memory(db: Path, minilm: Embedder) -> Iterator[Memory]:
    mem = Memory(AsyncMemory(embedder=minilm, store=SQLiteStore(db)))
    mem.add("I like green tea", user_id="alice", infer=False, metadata={"k": "v", "n": 3, "tags": ["a", "b"]})
    yield mem
    mem.close()


def scope_of(user: Any, agent: Any) -> dict[str, Any]:
    return {k: v for k, v in (("user_id", user), ("agent_id", agent)) if v is not None}


def stored_texts(value: Any) -> list[str]:
    """The texts ``add(infer=False)`` stores for ``value`` (when it accepts it)."""
    items = [{"role": "user", "content": value}] if isinstance(value, str) else \
        [value] if isinstance(value, dict) else value
    return [m.get("content") or "" for m in items if m.get("role", "user") != "system"]


@FUZZ
@given(value=messages, user=users, agent=agents, meta=metadata)
def test_add_accepts_or_refuses_clearly_and_reads_back_what_it_stored(memory: Memory, value: Any, user: Any,
                                                                      agent: Any, meta: Any) -> None:
    scope = scope_of(user, agent)
    try:
        result = memory.add(value, metadata=meta, infer=False, **scope)
    except MindgateError as exc:
        assert str(exc)
        event(f"add refused: {type(exc).__name__}")
        return
    event("add stored")
    assert isinstance(meta, dict | None)
    expected = stored_texts(value)
    for item in result["results"]:
        if item["event"] == "NONE":  # a duplicate (same text up to case, width and spacing) of a stored memory
            assert content_hash(item["memory"]) in {content_hash(t) for t in expected}
            continue
        assert item["event"] == "ADD" and item["memory"] in expected
        got = memory.get(item["id"], **scope)
        assert got is not None and got["memory"] == item["memory"]
        assert {k: got.get(k) for k in scope} == scope
        extra = {k: v for k, v in (got["metadata"] or {}).items() if k not in ("role", "source_message_ids")}
        assert extra == (meta or {})
        assert memory.history(item["id"], **scope)[0]["event"] == "ADD"


@FUZZ
@given(flt=filters, user=users, agent=agents, query=texts,
       limit=mostly(st.one_of(st.none(), st.integers(1, 50)), st.one_of(st.integers(-2, 20_000), st.floats())),
       threshold=mostly(st.none(), st.one_of(st.floats(-2, 2), st.floats(allow_nan=True))))
def test_reads_with_any_filter_stay_in_scope_or_refuse_clearly(memory: Memory, flt: Any, user: Any, agent: Any,
                                                               query: str, limit: Any, threshold: Any) -> None:
    scope = scope_of(user, agent)
    size = {} if limit is None else {"limit": limit}
    for call in (lambda: memory.get_all(filters=flt, **size, **scope),
                 lambda: memory.search(query, filters=flt, threshold=threshold, **size, **scope),
                 lambda: memory.count(filters=flt, **scope)):
        try:
            result = call()
        except MindgateError as exc:
            assert str(exc)
            event(f"read refused: {type(exc).__name__}")
            continue
        event("read answered" + (" with results" if not isinstance(result, int) and result["results"] else ""))
        if isinstance(result, int):
            assert result >= 0
            continue
        for item in result["results"]:
            owner = {k: item.get(k) for k in ("user_id", "agent_id")}
            assert all(owner[k] == v for k, v in scope.items()), (scope, owner)
            if "score" in item:
                assert math.isfinite(item["score"])


@FUZZ
@given(memory_id=st.one_of(texts, st.integers(), st.none()), data=st.one_of(texts, st.integers()), user=users,
       meta=metadata)
def test_calls_by_id_answer_or_refuse_clearly(memory: Memory, memory_id: Any, data: Any, user: Any,
                                              meta: Any) -> None:
    scope = scope_of(user, None)
    for call in (lambda: memory.get(memory_id, **scope), lambda: memory.history(memory_id, **scope),
                 lambda: memory.update(memory_id, data, metadata=meta, **scope),
                 lambda: memory.delete(memory_id, **scope)):
        try:
            call()
        except MindgateError as exc:
            assert str(exc)


def test_updates_and_deletes_of_fuzzed_memories_keep_history(memory: Memory) -> None:
    added = memory.add([{"role": "user", "content": t} for t in ("e\u0301te", "😀 ok", "'; --", "\U0010ffff")],
                       user_id="fuzz-owner", infer=False)["results"]
    first, second = added[0]["id"], added[1]["id"]
    memory.update(first, "ÉTÉ \u202e", user_id="fuzz-owner")
    memory.delete(second, user_id="fuzz-owner")
    assert [h["event"] for h in memory.history(first)] == ["ADD", "UPDATE"]
    assert [h["event"] for h in memory.history(second)] == ["ADD", "DELETE"]


def test_the_store_is_consistent_after_the_fuzzing(memory: Memory, db: Path) -> None:
    problems, rows, history = crash.store_problems(db)
    assert problems == []
    assert len(rows) > 5 and len(history) == len(rows)
