"""Pure units of the memory layer: filters, input validation, extraction decisions, rank fusion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mindgate.errors import FilterError, InvalidRequestError, ScopeError
from mindgate.memory._extraction import (
    FACT_MAX_CHARS,
    MAX_DECISIONS,
    build_messages,
    clean_text,
    decision_model,
    decision_schema,
    decisions_validator,
    plan,
)
from mindgate.memory._filters import And, Condition, Not, Or, matches, parse_filters
from mindgate.memory._inputs import normalize_messages, scope_from, validate_metadata
from mindgate.memory._retrieval import QueryVectors, fuse
from mindgate.memory.stores._base import MemoryRecord, Scope, content_hash
from mindgate.providers._json_constraint import schema_regex
from mindgate.providers._structured import prompt_schema


def record(i: int, text: str = "fact", age_days: int = 0) -> MemoryRecord:
    return MemoryRecord(id=f"id{i}", memory=f"{text} {i}", hash=content_hash(f"{text} {i}"), scope=Scope("u"),
                        created_at=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=age_days))


def test_filters_parse_into_a_tree() -> None:
    flt = parse_filters({"category": "movies", "OR": [{"rating": {"gte": 4}}, {"NOT": {"tag": {"in": ["x"]}}}]})
    assert flt == And((Condition("category", "eq", "movies"),
                       Or((Condition("rating", "gte", 4), Not(Condition("tag", "in", ("x",)))))))
    assert parse_filters(None) is None
    assert parse_filters({}) is None


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"rating": {"greater": 3}}, "unknown filter operator 'greater'"),
    ({"rating": {"in": "abc"}}, "takes a non-empty list"),
    ({"rating": {"gt": [1]}}, "takes a number or string"),
    ({"AND": {"a": 1}}, "AND takes a non-empty list"),
    ({"and": [{"a": 1}]}, "must be written 'AND'"),
    ({"a b": 1}, "invalid filter field name"),
    ({"a": {"eq": float("nan")}}, "not a finite number"),
    ({"a": {"eq": {"nested": 1}}}, "must be a string, number, boolean or null"),
    ({"a": {}}, "has no operator"),
    ("category=movies", "must be a non-empty object"),
])
def test_bad_filters_are_rejected_not_ignored(raw: object, fragment: str) -> None:
    with pytest.raises(FilterError, match=fragment):
        parse_filters(raw)  # type: ignore[arg-type]


def test_deeply_nested_filters_are_rejected() -> None:
    raw: dict = {"a": 1}
    for _ in range(40):
        raw = {"NOT": raw}
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filters(raw)


def test_reference_semantics_of_every_operator() -> None:
    meta = {"cat": "movies", "rating": 4, "tags": ["jazz", "Blues"], "note": "Loves Paris", "flag": True}
    cases = {
        "eq": ({"cat": "movies"}, {"cat": "books"}),
        "ne": ({"cat": {"ne": "books"}}, {"cat": {"ne": "movies"}}),
        "in": ({"rating": {"in": [3, 4]}}, {"rating": {"in": [5]}}),
        "nin": ({"rating": {"nin": [5]}}, {"rating": {"nin": [4]}}),
        "gt": ({"rating": {"gt": 3}}, {"rating": {"gt": 4}}),
        "gte": ({"rating": {"gte": 4}}, {"rating": {"gte": 5}}),
        "lt": ({"rating": {"lt": 5}}, {"rating": {"lt": 4}}),
        "lte": ({"rating": {"lte": 4}}, {"rating": {"lte": 3}}),
        "contains-list": ({"tags": {"contains": "jazz"}}, {"tags": {"contains": "rock"}}),
        "contains-str": ({"note": {"contains": "Paris"}}, {"note": {"contains": "paris"}}),
        "icontains": ({"note": {"icontains": "paris"}}, {"note": {"icontains": "rome"}}),
        "bool": ({"flag": True}, {"flag": 1}),
        "missing": ({"absent": {"ne": 1}}, {"absent": 1}),
    }
    for name, (yes, no) in cases.items():
        assert matches(parse_filters(yes), meta), name
        assert not matches(parse_filters(no), meta), name


@given(st.dictionaries(st.sampled_from(["a", "b"]), st.integers(-3, 3)), st.integers(-3, 3))
def test_not_is_the_complement(meta: dict, value: int) -> None:
    flt = parse_filters({"a": {"gte": value}})
    assert matches(parse_filters({"NOT": {"a": {"gte": value}}}), meta) is not matches(flt, meta)


def test_messages_normalise_from_every_accepted_shape() -> None:
    assert normalize_messages("hi") == [{"role": "user", "content": "hi"}]
    assert normalize_messages({"role": "assistant", "content": "ok", "id": 7}) == \
        [{"role": "assistant", "content": "ok", "id": 7}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}]
    assert normalize_messages(parts)[0]["content"] == "a"
    for bad, fragment in [([], "empty"), (42, "must be a string"),
                          ([{"role": "robot", "content": "x"}], "unknown role"),
                          (["x"], "must be a dict"), ([{"role": "user", "content": 5}], "content must be")]:
        with pytest.raises(InvalidRequestError, match=fragment):
            normalize_messages(bad)


def test_scope_is_required_and_validated() -> None:
    with pytest.raises(ScopeError, match="user_id, agent_id or run_id"):
        Scope()
    with pytest.raises(ScopeError, match="non-empty string"):
        Scope(user_id="  ")
    assert Scope(user_id="u", agent_id="a").partition == "user:u"
    assert Scope(agent_id="a", run_id="r").partition == "agent:a"
    assert Scope(run_id="r").partition == "run:r"


def test_mem0_v2_filters_carry_the_scope() -> None:
    scope, rest = scope_from(None, None, None, {"AND": [{"user_id": "alice"}, {"cat": "x"}]})
    assert scope == Scope(user_id="alice") and rest == {"AND": [{"cat": "x"}]}
    scope, rest = scope_from(None, None, None, {"user_id": "alice", "agent_id": {"eq": "bot"}})
    assert scope == Scope("alice", "bot") and rest is None
    with pytest.raises(InvalidRequestError, match="given twice"):
        scope_from("alice", None, None, {"user_id": "bob"})


def test_metadata_validation() -> None:
    assert validate_metadata({"a": [1, "x"]}) == {"a": [1, "x"]}
    for bad, fragment in [({"user_id": "x"}, "may not contain"), ({"a": float("inf")}, "finite"),
                          ({"a": object()}, "JSON-serialisable"), ("x", "must be a dict"), ({"": 1}, "non-empty")]:
        with pytest.raises(InvalidRequestError, match=fragment):
            validate_metadata(bad)


def test_extraction_prompt_is_small_and_numbered() -> None:
    messages = build_messages([{"role": "user", "content": "I moved to Berlin."}], [record(0, "Lives in Paris")],
                              custom_instructions="Only places.")
    assert messages[0]["role"] == "system" and "Only places." in messages[0]["content"]
    assert "0: Lives in Paris 0" in messages[1]["content"]
    assert "[1] user: I moved to Berlin." in messages[1]["content"]
    assert len(messages[0]["content"]) < 2000  # ~300 tokens: fits a 4k context with the conversation


def test_decisions_map_short_ids_back_and_reject_unknown_ones() -> None:
    existing = [record(0), record(1)]
    validate = decisions_validator(existing, n_messages=2)
    decisions = validate({"memory": [{"event": "UPDATE", "id": 1, "text": "new", "sources": [2, 9]},
                                     {"event": "ADD", "text": "fresh"}, {"event": "NONE", "id": 99}]})
    assert [(d.event, d.target.id if d.target else None, d.sources) for d in decisions] == \
        [("UPDATE", "id1", [2]), ("ADD", None, [])]
    assert validate([{"event": "DELETE", "id": 0}])[0].target is existing[0]
    with pytest.raises(ValueError, match=r"existing memory ids are 0\.\.1"):
        validate({"memory": [{"event": "DELETE", "id": 5}]})
    with pytest.raises(ValueError, match="without a text"):
        validate({"memory": [{"event": "ADD", "text": "  "}]})
    with pytest.raises(ValueError, match="does not match the schema"):
        validate({"memory": [{"event": "MERGE"}]})


def test_rank_fusion_rewards_agreement_and_is_normalised() -> None:
    a, b, c = record(1), record(2), record(3)
    hits = fuse([(a, 0.9), (b, 0.8)], [(b, 7.0), (c, 3.0)], fusion="rrf", rrf_k=60)
    assert [h.record.id for h in hits] == ["id2", "id1", "id3"]
    assert hits[0].vector_score == 0.8 and hits[0].text_score == 7.0
    assert all(0 < h.score <= 1 for h in hits)
    top = fuse([(a, 0.9)], [(a, 1.0)], fusion="rrf", rrf_k=60)
    assert top[0].score == pytest.approx(1.0)
    assert fuse([], []) == []


def test_recency_reorders_only_found_candidates() -> None:
    old, new = record(1, age_days=30), record(2, age_days=0)
    plain = fuse([(old, 0.9), (new, 0.9)], [(new, 1.0), (old, 1.0)])
    assert plain[0].score == pytest.approx(plain[1].score)
    boosted = fuse([(old, 0.9), (new, 0.9)], [(new, 1.0), (old, 1.0)], recency=True)
    assert boosted[0].record.id == "id2" and boosted[0].score > boosted[1].score
    assert {h.record.id for h in boosted} == {"id1", "id2"}


def test_convex_fusion_keeps_score_gaps_and_explains_itself() -> None:
    a, b, c = record(1), record(2), record(3)
    # a is far ahead in text, barely behind in vector: rank fusion would tie a and b, convex does not
    hits = fuse([(b, 0.62), (a, 0.60), (c, 0.20)], [(a, 9.0), (b, 1.0)], fusion="convex", alpha=0.5)
    assert [h.record.id for h in hits] == ["id1", "id2", "id3"]
    assert all(0 <= h.score <= 1 for h in hits)
    top = hits[0].explanation()
    assert top["method"] == "convex"
    assert top["signals"]["text"] == {"rank": 1, "raw": 9.0, "normalized": 1.0, "weight": 0.5, "contribution": 0.5}
    assert top["signals"]["vector"]["rank"] == 2
    assert sum(p["contribution"] for p in top["signals"].values()) == pytest.approx(hits[0].score, abs=1e-5)
    assert "text" not in hits[2].explanation()["signals"]  # c was not a text candidate: it gets 0 from it
    assert hits[0].to_result(explain=True)["explain"] == top and "explain" not in hits[0].to_result()
    # one retriever alone carries the whole weight
    assert fuse([(a, 0.5)], [], fusion="convex", alpha=0.3)[0].score == pytest.approx(1.0)
    assert fuse([], [(a, 2.0)], fusion="convex", alpha=0.3)[0].score == pytest.approx(1.0)


def test_recency_keeps_convex_scores_in_range() -> None:
    old, new = record(1, age_days=30), record(2, age_days=0)
    hits = fuse([(old, 0.9), (new, 0.9)], [(new, 1.0), (old, 1.0)], fusion="convex", recency=True)
    assert hits[0].record.id == "id2" and 0 < hits[1].score < hits[0].score <= 1
    assert sum(p["contribution"] for p in hits[0].parts.values()) == pytest.approx(hits[0].score)


def test_query_vector_cache_is_a_bounded_lru() -> None:
    cache = QueryVectors(size=2)
    cache.put("a", np.ones(2))
    cache.put("b", np.zeros(2))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", np.ones(2))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    off = QueryVectors(size=0)
    off.put("a", np.ones(2))
    assert off.get("a") is None


def test_decision_schema_is_bounded_and_sized_from_the_conversation() -> None:
    short = plan([{"role": "user", "content": "I moved to Berlin."}], [])
    assert short.schema["required"] == ["memory"] and short.schema["additionalProperties"] is False
    memory = short.schema["properties"]["memory"]
    item = short.schema["$defs"][memory["items"]["$ref"].rsplit("/", 1)[-1]]  # pydantic's model_json_schema()
    assert memory["maxItems"] == 2
    assert item["properties"]["event"]["const"] == "ADD" and "id" not in item["properties"]
    assert item["properties"]["text"]["maxLength"] == FACT_MAX_CHARS
    assert item["properties"]["sources"]["items"]["const"] == 1 and item["properties"]["sources"]["maxItems"] == 3
    assert item["required"] == ["event", "text"] and item["additionalProperties"] is False
    assert short.options["frequency_penalty"] > 0 and short.options["temperature"] == 0
    long = plan([{"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "ok"}],
                [record(0), record(1), record(2)])
    item = long.schema["$defs"]["Decision"]
    assert long.schema["properties"]["memory"]["maxItems"] == MAX_DECISIONS
    assert item["properties"]["id"]["enum"] == [0, 1, 2] and "anyOf" not in item["properties"]["id"]  # no null
    assert item["properties"]["event"]["enum"] == ["ADD", "UPDATE", "DELETE", "NONE"]
    # the token cap covers the longest answer the schema allows, and grows with it
    assert short.max_tokens < long.max_tokens <= 1024
    assert long.max_tokens >= MAX_DECISIONS * (FACT_MAX_CHARS // 4)
    # the schema is the model's: an answer it accepts is one the bounds allow, and the reverse
    model = decision_model(3, 2, 2)
    model.model_validate({"memory": [{"event": "UPDATE", "id": 2, "text": "Lives in Rome", "sources": [1, 2]}]})
    for bad in ({"memory": [{"event": "ADD", "text": "x" * (FACT_MAX_CHARS + 1)}]},
                {"memory": [{"event": "ADD", "id": 3, "text": "Has a cat"}]},
                {"memory": [{"event": "ADD", "text": "Has a cat", "sources": [3]}]},
                {"memory": [{"event": "ADD", "text": "Has a cat"}] * 3}):
        with pytest.raises(ValidationError):
            model.model_validate(bad)
    assert schema_regex(decision_schema(3, 2, 2))  # the greedy constraint compiles it (no grammar fallback)
    # what a model reads in a prompt (json_object / text modes): inlined, as a person writes it
    shown = prompt_schema(short.schema)["properties"]["memory"]
    assert shown["items"]["properties"]["event"] == {"type": "string", "enum": ["ADD"]} and "$ref" not in str(shown)


def test_repeated_text_is_cleaned_and_repeated_decisions_dropped() -> None:
    assert clean_text("I'm a nurse. I'm a nurse. I'm a nurse. I'm a nu") == "I'm a nurse."
    assert clean_text("Lives in Berlin. Works as a nurse.") == "Lives in Berlin. Works as a nurse."
    assert clean_text("  ") is None and clean_text(None) is None
    validate = decisions_validator([], n_messages=1)
    decisions = validate({"memory": [{"event": "ADD", "text": "Is a nurse"}, {"event": "ADD", "text": "is a  NURSE"},
                                     {"event": "ADD", "text": "Lives in Berlin"}]})
    assert [d.text for d in decisions] == ["Is a nurse", "Lives in Berlin"]
