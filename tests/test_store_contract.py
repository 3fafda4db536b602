"""One contract suite for every memory store (SQLite, pgvector): the semantics of stores/_base.py.

``store_factory()`` returns a fresh, empty, unopened store; ``store_factory(reopen=store)`` returns a new
store object on the same storage (tests that need it skip for a factory that does not take ``reopen``).
Vectors are small deterministic numpy vectors, so no model is needed here.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mindgate.errors import EmbedderMismatchError, FilterError, InvalidRequestError, NotFoundError
from mindgate.memory._filters import MAX_TERMS, MAX_VALUES, Filter, matches, parse_filters
from mindgate.memory.stores._base import (
    AddChange,
    ContextSummary,
    DeleteChange,
    MemoryRecord,
    MemoryStore,
    Scope,
    UpdateChange,
    content_hash,
)
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

StoreFactory = Callable[..., MemoryStore]
DIMS = 8
IDENT = EmbedderIdentity("test", "unit-vectors", DIMS)
ALICE = Scope(user_id="alice")
BOB = Scope(user_id="bob")


@pytest.fixture(params=["sqlite", "pgvector"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    if request.param == "pgvector":
        try:
            pg: StoreFactory = request.getfixturevalue("pg_store_factory")
        except pytest.FixtureLookupError:
            pytest.skip("pgvector store not available yet")
        yield pg
        return
    created: list[MemoryStore] = []
    counter = itertools.count()

    def make(reopen: MemoryStore | None = None) -> MemoryStore:
        path = reopen.path if isinstance(reopen, SQLiteStore) else tmp_path / f"store{next(counter)}.db"
        store = SQLiteStore(path)
        created.append(store)
        return store

    yield make
    for store in created:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> MemoryStore:
    s = store_factory()
    s.open(IDENT)
    return s


def reopen(factory: StoreFactory, store: MemoryStore) -> MemoryStore:
    if "reopen" not in inspect.signature(factory).parameters:
        pytest.skip("this store factory cannot reopen a store")
    return factory(reopen=store)


def vec(seed: int | str, dims: int = DIMS) -> np.ndarray:
    """A deterministic random unit vector."""
    key = seed if isinstance(seed, int) else int.from_bytes(content_hash(seed)[:8].encode(), "big")
    v = np.random.default_rng(key).standard_normal(dims).astype(np.float32)
    return v / np.linalg.norm(v)


_ids = itertools.count()


def add(text: str, scope: Scope = ALICE, *, metadata: dict[str, Any] | None = None,
        vector: np.ndarray | None = None, id: str | None = None, created_at: datetime | None = None,
        actor: str | None = None) -> AddChange:
    rec = MemoryRecord(id=id or f"mem-{next(_ids):06d}", memory=text, hash=content_hash(text), scope=scope,
                       metadata=metadata or {})
    if created_at is not None:
        rec.created_at = created_at
    return AddChange(rec, vector if vector is not None else vec(text), actor=actor)


def ids(records: list[MemoryRecord]) -> list[str]:
    return [r.id for r in records]


def hit_ids(hits: list[tuple[MemoryRecord, float]]) -> list[str]:
    return [r.id for r, _ in hits]


# -- identity --------------------------------------------------------------------------------------


def test_open_records_identity_and_a_different_embedder_names_reindex(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.open(IDENT)
    s.apply([add("I live in Paris")])
    s.open(IDENT)  # the same identity again is fine
    for other in (EmbedderIdentity("test", "another-model", DIMS), EmbedderIdentity("test", "unit-vectors", 16),
                  EmbedderIdentity("other", "unit-vectors", DIMS)):
        with pytest.raises(EmbedderMismatchError) as err:
            s.open(other)
        assert "mindgate reindex" in str(err.value)
        assert "unit-vectors" in str(err.value) and other.describe() in str(err.value)
    again = reopen(store_factory, s)
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        again.open(EmbedderIdentity("test", "another-model", DIMS))
    again.open(IDENT)
    assert [r.memory for r in again.list(ALICE)] == ["I live in Paris"]


def test_vectors_of_the_wrong_dimension_are_rejected_before_writing(store: MemoryStore) -> None:
    with pytest.raises(InvalidRequestError):
        store.apply([add("fine"), add("too long", vector=vec(1, 16))])
    with pytest.raises(InvalidRequestError):
        store.apply([add("zero", vector=np.zeros(DIMS, np.float32))])
    with pytest.raises(InvalidRequestError):
        store.vector_search(ALICE, vec(1, 4), 3)
    assert store.count(ALICE) == 0


# -- records and scopes ----------------------------------------------------------------------------


def test_add_then_read_back_everything(store: MemoryStore) -> None:
    created = datetime(2024, 5, 17, 12, 30, 1, 123456, tzinfo=UTC)
    meta = {"category": "movies", "rating": 4.5, "tags": ["noir", "Ünïcode"], "nested": {"a": [1, None]}}
    scope = Scope(user_id="alice", agent_id="planner", run_id="r1")
    [res] = store.apply([add("Likes film noir", scope, metadata=meta, id="m-1", created_at=created)])
    assert (res.id, res.memory, res.event) == ("m-1", "Likes film noir", "ADD")
    rec = store.get("m-1")
    assert rec is not None
    assert (rec.memory, rec.hash, rec.scope, rec.metadata) == ("Likes film noir", content_hash("Likes film noir"),
                                                               scope, meta)
    assert rec.created_at == created and rec.updated_at is None
    assert rec.to_result()["user_id"] == "alice" and rec.to_result()["run_id"] == "r1"
    assert store.get("m-1", scope) is not None and store.get("m-1", BOB) is None
    assert store.get("no-such-id") is None


def test_the_key_context_is_kept_read_back_and_copied(store: MemoryStore, store_factory: StoreFactory) -> None:
    change = add("Yes, the blue pair.", metadata={"role": "user"})
    change.record.key_context = "Which shoes did you clean?"
    store.apply([change, add("no context")])
    by_text = {r.memory: r.key_context for r in store.list(ALICE)}
    assert by_text == {"Yes, the blue pair.": "Which shoes did you clean?", "no context": None}
    assert [r.key_context for r in store.iter_records() if r.memory == "Yes, the blue pair."] == \
        ["Which shoes did you clean?"]
    target = store_factory()
    target.open(IDENT)
    target.import_records([(r, None, False) for r in store.iter_records()])
    assert {r.memory: r.key_context for r in target.list(ALICE)} == by_text


def test_list_is_newest_first_with_limit_and_offset(store: MemoryStore) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    store.apply([add(f"fact {i}", created_at=base + timedelta(minutes=i), id=f"f{i}") for i in range(7)])
    assert ids(store.list(ALICE)) == [f"f{i}" for i in range(6, -1, -1)]
    assert ids(store.list(ALICE, limit=3, offset=2)) == ["f4", "f3", "f2"]
    assert store.list(ALICE, limit=0) == [] and store.count(ALICE) == 7
    with pytest.raises(InvalidRequestError):
        store.list(ALICE, limit=-1)


SCOPED = {
    "u": Scope(user_id="alice"),
    "ua": Scope(user_id="alice", agent_id="a1"),
    "uar": Scope(user_id="alice", agent_id="a1", run_id="r1"),
    "ur": Scope(user_id="alice", run_id="r1"),
    "a": Scope(agent_id="a1"),
    "ar": Scope(agent_id="a1", run_id="r1"),
    "r": Scope(run_id="r1"),
    "bob": Scope(user_id="bob", agent_id="a1", run_id="r1"),
}
READS = [
    (Scope(user_id="alice"), {"u", "ua", "uar", "ur"}),
    (Scope(user_id="alice", agent_id="a1"), {"ua", "uar"}),
    (Scope(user_id="alice", run_id="r1"), {"uar", "ur"}),
    (Scope(user_id="alice", agent_id="a1", run_id="r1"), {"uar"}),
    (Scope(agent_id="a1"), {"a", "ar"}),
    (Scope(agent_id="a1", run_id="r1"), {"ar"}),
    (Scope(run_id="r1"), {"r"}),
    (Scope(user_id="bob"), {"bob"}),
    (Scope(user_id="carol"), set()),
    (Scope(agent_id="a2"), set()),
]


@pytest.mark.parametrize(("read", "expected"), READS, ids=[str(r.as_dict()) for r, _ in READS])
def test_a_read_sees_its_partition_narrowed_by_the_ids_it_gives(store: MemoryStore, read: Scope,
                                                               expected: set[str]) -> None:
    store.apply([add(f"shared words about {name}", scope, id=name, vector=vec(name))
                 for name, scope in SCOPED.items()])
    assert set(ids(store.list(read))) == expected
    assert store.count(read) == len(expected)
    assert set(hit_ids(store.vector_search(read, vec("u"), 20))) == expected
    assert set(hit_ids(store.text_search(read, "shared words", 20))) == expected
    for name in SCOPED:
        assert (store.get(name, read) is not None) == (name in expected)


def test_the_same_text_in_different_exact_scopes_is_separate(store: MemoryStore) -> None:
    results = store.apply([add("I like tea", s) for s in SCOPED.values()])
    assert [r.event for r in results] == ["ADD"] * len(SCOPED)
    assert len({r.id for r in results}) == len(SCOPED)


# -- dedupe -----------------------------------------------------------------------------------------


def test_dedupe_by_normalised_hash_in_the_exact_scope(store: MemoryStore) -> None:
    [first] = store.apply([add("I love jazz")])
    [again] = store.apply([add("  i LOVE\tjazz ")])
    assert (again.event, again.id) == ("NONE", first.id)
    [in_batch_a, in_batch_b] = store.apply([add("Dogs are great"), add("dogs are GREAT")])
    assert in_batch_a.event == "ADD" and (in_batch_b.event, in_batch_b.id) == ("NONE", in_batch_a.id)
    assert store.count(ALICE) == 2
    [narrower] = store.apply([add("I love jazz", Scope(user_id="alice", agent_id="a1"))])
    assert narrower.event == "ADD"
    assert len(store.history(first.id)) == 1 and store.history(again.id) == store.history(first.id)


def test_an_update_never_creates_a_duplicate(store: MemoryStore) -> None:
    paris, berlin = store.apply([add("I live in Paris"), add("I live in Berlin")])
    [merged] = store.apply([UpdateChange(paris.id, ALICE, "i live in berlin", vec(5))])
    assert (merged.id, merged.event) == (paris.id, "DELETE")
    assert ids(store.list(ALICE)) == [berlin.id]
    assert [h.event for h in store.history(paris.id)] == ["ADD", "DELETE"]


def test_a_deleted_fact_can_be_added_again(store: MemoryStore) -> None:
    [first] = store.apply([add("I smoke")])
    store.apply([DeleteChange(first.id, ALICE)])
    [second] = store.apply([add("I smoke")])
    assert second.event == "ADD" and second.id != first.id
    assert ids(store.list(ALICE)) == [second.id]


# -- update, delete, history -------------------------------------------------------------------------


def test_update_and_delete_write_history_and_delete_is_soft(store: MemoryStore) -> None:
    [a] = store.apply([add("I live in Paris", metadata={"src": "chat"}, actor="extractor")])
    [u] = store.apply([UpdateChange(a.id, ALICE, "I moved to Berlin", vec("berlin"), actor="extractor")])
    assert (u.event, u.memory, u.previous_memory) == ("UPDATE", "I moved to Berlin", "I live in Paris")
    rec = store.get(a.id)
    assert rec is not None and rec.memory == "I moved to Berlin" and rec.metadata == {"src": "chat"}
    assert rec.updated_at is not None and rec.updated_at >= rec.created_at
    assert hit_ids(store.vector_search(ALICE, vec("berlin"), 1)) == [a.id]
    assert hit_ids(store.text_search(ALICE, "berlin", 5)) == [a.id] and store.text_search(ALICE, "paris", 5) == []
    store.apply([UpdateChange(a.id, ALICE, "I moved to Berlin", vec("berlin"), metadata={"src": "edit"})])
    assert store.get(a.id).metadata == {"src": "edit"}  # type: ignore[union-attr]
    [d] = store.apply([DeleteChange(a.id, ALICE, actor="user")])
    assert (d.id, d.event, d.memory) == (a.id, "DELETE", "I moved to Berlin")
    assert store.get(a.id) is None and store.get(a.id, ALICE) is None and store.count(ALICE) == 0
    deleted = store.get(a.id, ALICE, include_deleted=True)
    assert deleted is not None and deleted.memory == "I moved to Berlin"
    assert store.get(a.id, BOB, include_deleted=True) is None
    assert store.vector_search(ALICE, vec("berlin"), 5) == [] and store.text_search(ALICE, "berlin", 5) == []
    hist = store.history(a.id)
    assert [(h.event, h.old_memory, h.new_memory, h.actor) for h in hist] == [
        ("ADD", None, "I live in Paris", "extractor"),
        ("UPDATE", "I live in Paris", "I moved to Berlin", "extractor"),
        ("UPDATE", "I moved to Berlin", "I moved to Berlin", None),
        ("DELETE", "I moved to Berlin", None, "user"),
    ]
    assert all(h.memory_id == a.id for h in hist) and len({h.id for h in hist}) == 4
    assert [h.created_at for h in hist] == sorted(h.created_at for h in hist)
    assert hist[-1].to_result()["is_deleted"] is True
    with pytest.raises(NotFoundError):
        store.apply([DeleteChange(a.id, ALICE)])
    assert store.history("never-existed") == []


@pytest.mark.parametrize("bad", ["unknown id", "other user", "narrower scope", "other partition"])
def test_changes_outside_the_scope_are_not_found_and_write_nothing(store: MemoryStore, bad: str) -> None:
    [a] = store.apply([add("I live in Paris", Scope(user_id="alice", agent_id="a1"))])
    target, scope = {"unknown id": ("nope", ALICE), "other user": (a.id, BOB),
                     "narrower scope": (a.id, Scope(user_id="alice", agent_id="a2")),
                     "other partition": (a.id, Scope(agent_id="a1"))}[bad]
    for change in (UpdateChange(target, scope, "I live in Rome", vec(3)), DeleteChange(target, scope)):
        with pytest.raises(NotFoundError):
            store.apply([add("written first"), change])
    assert [r.memory for r in store.list(ALICE)] == ["I live in Paris"]
    assert [h.event for h in store.history(a.id)] == ["ADD"]
    assert store.text_search(ALICE, "written first", 5) == []


def test_a_batch_that_fails_midway_writes_nothing(store: MemoryStore) -> None:
    [keep] = store.apply([add("already here", id="dup")])
    batch = [add("one new fact"), UpdateChange(keep.id, ALICE, "changed", vec(9)), DeleteChange(keep.id, ALICE),
             add("reuses an id", id="dup"), add("never reached")]
    with pytest.raises(InvalidRequestError, match="dup"):
        store.apply(batch)
    assert [(r.id, r.memory) for r in store.list(ALICE)] == [("dup", "already here")]
    assert [h.event for h in store.history("dup")] == ["ADD"]
    assert hit_ids(store.vector_search(ALICE, vec("already here"), 5)) == ["dup"]
    assert store.text_search(ALICE, "one new fact never reached", 5) == []
    store.apply([add("one new fact")])  # the rolled-back hash does not block a later add
    assert store.count(ALICE) == 2


def test_delete_scope_soft_deletes_only_what_the_scope_reads(store: MemoryStore) -> None:
    store.apply([add(f"shared words about {name}", scope, id=name) for name, scope in SCOPED.items()])
    assert store.delete_scope(Scope(user_id="alice", agent_id="a1"), actor="admin") == 2
    assert set(ids(store.list(ALICE))) == {"u", "ur"}
    assert store.count(Scope(agent_id="a1")) == 2 and store.count(BOB) == 1
    assert [(h.event, h.actor) for h in store.history("uar")] == [("ADD", None), ("DELETE", "admin")]
    assert store.delete_scope(Scope(user_id="alice", agent_id="a1")) == 0
    assert set(hit_ids(store.text_search(ALICE, "shared", 10))) == {"u", "ur"}


def test_scopes_lists_live_ids_of_each_kind_with_counts(store: MemoryStore) -> None:
    assert store.scopes() == []
    store.apply([add("a1", ALICE), add("a2", ALICE), add("b1", BOB), add("ar", Scope(user_id="alice", run_id="r1")),
                 add("agent", Scope(agent_id="planner"))])
    [gone] = store.apply([add("b2", BOB)])
    store.apply([DeleteChange(gone.id, BOB)])
    assert store.scopes() == [("user_id", "alice", 3), ("agent_id", "planner", 1), ("run_id", "r1", 1),
                              ("user_id", "bob", 1)]
    assert store.scopes(limit=2) == [("user_id", "alice", 3), ("agent_id", "planner", 1)]


def test_reset_drops_everything_including_the_identity(store: MemoryStore) -> None:
    [a] = store.apply([add("I live in Paris"), add("hi", BOB)])[:1]
    store.reset()
    assert store.count(ALICE) == 0 and store.count(BOB) == 0 and store.history(a.id) == []
    assert list(store.iter_records(include_deleted=True)) == [] and list(store.iter_history()) == []
    other = EmbedderIdentity("test", "after-reset", 4)
    store.open(other)
    store.apply([add("fresh start", vector=vec(1, 4))])
    assert hit_ids(store.vector_search(ALICE, vec(1, 4), 3)) != []


# -- the context-summary cache ----------------------------------------------------------------------


def test_context_summaries_are_kept_per_conversation_replaced_and_dropped_with_the_scope(
        store_factory: StoreFactory) -> None:
    store = store_factory()  # the cache works before open(): the fit stage needs no embedder
    for covered in (4, 12, 8):
        store.put_context_summary(ContextSummary("user:alice", "conv1", covered, f"p{covered}", "summary",
                                                 f"summary of {covered}"))
    store.put_context_summary(ContextSummary("user:alice", "conv1", 12, "p12", "memory", ""))
    store.put_context_summary(ContextSummary("user:bob", "conv1", 20, "p20", "summary", "bob's"))
    got = store.context_summaries("user:alice", "conv1", "summary")
    assert [(e.covered, e.prefix, e.text) for e in got] == [(12, "p12", "summary of 12"), (8, "p8", "summary of 8"),
                                                           (4, "p4", "summary of 4")]
    assert [e.covered for e in store.context_summaries("user:alice", "conv1", "summary", limit=1)] == [12]
    assert [e.kind for e in store.context_summaries("user:alice", "conv1", "memory")] == ["memory"]
    assert store.context_summaries("user:alice", "other", "summary") == []
    store.put_context_summary(ContextSummary("user:alice", "conv1", 12, "p12", "summary", "rewritten"))
    assert store.context_summaries("user:alice", "conv1", "summary")[0].text == "rewritten"

    store.open(IDENT)
    store.delete_scope(Scope(user_id="alice"))  # forgetting a user forgets the summaries of their chats
    assert store.context_summaries("user:alice", "conv1", "summary") == []
    assert store.context_summaries("user:alice", "conv1", "memory") == []
    assert [e.text for e in store.context_summaries("user:bob", "conv1", "summary")] == ["bob's"]
    store.reset()
    assert store.context_summaries("user:bob", "conv1", "summary") == []


# -- vector and text search --------------------------------------------------------------------------


def test_vector_search_ranks_by_cosine_similarity(store: MemoryStore) -> None:
    vectors = {f"v{i}": vec(i) for i in range(30)}
    store.apply([add(f"fact {name}", id=name, vector=v) for name, v in vectors.items()])
    store.apply([add("bob's", BOB, vector=vectors["v0"])])
    q = vec(1000)
    expected = sorted(vectors, key=lambda n: -float(vectors[n] @ q))[:5]
    hits = store.vector_search(ALICE, q, 5)
    assert hit_ids(hits) == expected
    for rec, score in hits:
        assert score == pytest.approx(float(vectors[rec.id] @ q), abs=1e-5)
    [(top, same)] = store.vector_search(ALICE, vectors["v3"] * 7.5, 1)  # cosine ignores the norm
    assert top.id == "v3" and same == pytest.approx(1.0, abs=1e-5)
    [(_, opposite)] = store.vector_search(ALICE, -vectors["v3"], 30)[-1:]
    assert opposite == pytest.approx(-1.0, abs=1e-5)
    assert len(store.vector_search(ALICE, q, 100)) == 30 and store.vector_search(ALICE, q, 0) == []
    assert store.vector_search(Scope(user_id="nobody"), q, 5) == []


def test_filtered_vector_search_is_exact_even_when_the_filter_is_selective(store: MemoryStore) -> None:
    vectors = {f"v{i}": vec(i) for i in range(200)}
    store.apply([add(f"fact {n}", id=n, vector=v, metadata={"i": int(n[1:]), "even": int(n[1:]) % 2 == 0})
                 for n, v in vectors.items()])
    q = vectors["v0"]
    for raw in ({"i": {"gte": 190}}, {"even": False}, {"i": {"in": [3, 77, 150]}}):
        flt = parse_filters(raw)
        allowed = [n for n in vectors if matches(flt, {"i": int(n[1:]), "even": int(n[1:]) % 2 == 0})]
        expected = sorted(allowed, key=lambda n: -float(vectors[n] @ q))[:4]
        assert hit_ids(store.vector_search(ALICE, q, 4, flt)) == expected


def test_text_search_ranks_matches_and_ignores_scope_outsiders(store: MemoryStore) -> None:
    store.apply([add("My dog is called Rex", id="dog"), add("I work as a nurse at the city hospital", id="job"),
                 add("The dog park near the hospital is where Rex plays with another dog", id="park"),
                 add("Rex the dog", BOB, id="bobdog")])
    hits = store.text_search(ALICE, "dog rex", 10)
    assert set(hit_ids(hits)) == {"dog", "park"}
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    assert hit_ids(store.text_search(ALICE, "hospital nurse", 1)) == ["job"]
    assert store.text_search(ALICE, "zebra", 5) == [] and store.text_search(ALICE, "dog", 0) == []


def test_candidates_are_the_search_hits_and_records_reads_them_back(store: MemoryStore) -> None:
    store.apply([add(f"the garden fact {i}", id=f"g{i}", vector=vec(i), metadata={"role": "user", "i": i},
                     created_at=datetime(2024, 1, 1 + i, tzinfo=UTC)) for i in range(12)])
    store.apply([UpdateChange("g3", ALICE, "the garden fact three, edited", vec(3), {"role": "assistant"})])
    q = vec(100)
    text = "garden fact"
    for candidates, hits in ((store.vector_candidates(ALICE, q, 8), store.vector_search(ALICE, q, 8)),
                             (store.text_candidates(ALICE, text, 8), store.text_search(ALICE, text, 8))):
        assert len(hits) == 8
        assert [(c.id, s) for c, s in candidates] == [(r.id, s) for r, s in hits]
        for (c, _), (r, _) in zip(candidates, hits, strict=True):  # what fusion reads, without the record
            assert (c.created_at, c.updated_at, c.metadata) == (r.created_at, r.updated_at, r.metadata)
        found = store.records([c for c, _ in candidates])
        assert [found[c.id] for c, _ in candidates] == [r for r, _ in hits]
    [(edited, _)] = [h for h in store.text_candidates(ALICE, "edited", 5)]
    assert edited.id == "g3" and edited.updated_at is not None and edited.metadata["role"] == "assistant"
    some = [c for c, _ in store.vector_candidates(ALICE, q, 4)]
    store.apply([DeleteChange(some[0].id, ALICE)])
    if all(c.record is None for c in some):  # read now: deleted since the search, so left out
        assert set(store.records(some)) == {c.id for c in some[1:]}
    else:  # read with the hits (as vector_search would have returned them)
        assert store.records(some) == {c.id: c.record for c in some}
    assert store.records([]) == {} and store.vector_candidates(ALICE, q, 0) == []
    assert store.text_candidates(Scope(user_id="nobody"), "garden", 5) == []


@pytest.mark.parametrize("query", [
    'dog "', '"dog"', "dog AND", "OR dog", "NOT dog", "dog NEAR(rex park)", "dog*", "^dog", "memory: dog",
    "dog'); DROP TABLE memories; --", "dog\\", "{dog}", "dog + rex - park", "(dog", "dog)", "'dog'", "dog:rex",
    "dog\x00rex", "d\u00f6g dog", "🐕 dog", "dog ☃",
])
def test_text_search_treats_query_syntax_as_words(store: MemoryStore, query: str) -> None:
    store.apply([add("my dog is called Rex", id="dog"), add("a garden for cats", id="cat")])
    found = hit_ids(store.text_search(ALICE, query, 5))
    assert "dog" in found and "cat" not in found
    assert store.count(ALICE) == 2


@pytest.mark.parametrize("query", ["", "   ", '"', "''", "*", "-- ;", "()", "AND OR NOT"])
def test_text_search_without_searchable_words(store: MemoryStore, query: str) -> None:
    store.apply([add("my dog is called Rex")])
    assert store.text_search(ALICE, query, 5) == []


def test_text_search_handles_unicode_words(store: MemoryStore) -> None:
    store.apply([add("Я живу в Москве", id="ru"), add("Μένω στην Αθήνα", id="el"), add("I live in Paris", id="en")])
    assert hit_ids(store.text_search(ALICE, "москве", 5)) == ["ru"]
    assert hit_ids(store.text_search(ALICE, "αθήνα", 5)) == ["el"]


# -- filters ----------------------------------------------------------------------------------------

DATA: dict[str, dict[str, Any]] = {
    "music": {"cat": "music", "rating": 5, "tags": ["jazz", "Blues"], "lang": "en"},
    "film": {"cat": "film", "rating": 3.5, "tags": ["noir"], "lang": "de", "seen": True},
    "nulls": {"cat": None, "rating": "5", "seen": False},
    "num": {"rating": 4, "note": "Loves Jazz and BLUES", "year": 1999},
    "empty": {},
    "nested": {"cat": {"sub": "music"}, "tags": "jazz-rock", "a.b": "dotted", "seen": 1},
    "unicode": {"cat": "Müsik", "tags": ["ÄRGER", 5], "lang": "EN", "rating": -2},
}
ALL = set(DATA)
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"cat": "music"}, {"music"}),
    ({"cat": None}, {"nulls"}),
    ({"seen": True}, {"film"}),
    ({"seen": 1}, {"nested"}),
    ({"seen": False}, {"nulls"}),
    ({"rating": 5}, {"music"}),
    ({"rating": "5"}, {"nulls"}),
    ({"rating": 3.5}, {"film"}),
    ({"rating": {"ne": 5}}, ALL - {"music"}),
    ({"cat": {"ne": None}}, ALL - {"nulls"}),
    ({"rating": {"gt": 3.5}}, {"music", "num"}),
    ({"rating": {"gte": 3.5}}, {"music", "num", "film"}),
    ({"rating": {"lt": 4}}, {"film", "unicode"}),
    ({"rating": {"lte": 4}}, {"film", "num", "unicode"}),
    ({"cat": {"gt": "m"}}, {"music"}),
    ({"year": {"gte": 1999, "lt": 2000}}, {"num"}),
    ({"lang": {"in": ["en", "de"]}}, {"music", "film"}),
    ({"rating": {"in": [5, 4]}}, {"music", "num"}),
    ({"seen": {"in": [True, None]}}, {"film"}),
    ({"lang": {"nin": ["en"]}}, ALL - {"music"}),
    ({"tags": {"contains": "jazz"}}, {"music", "nested"}),
    ({"tags": {"contains": "blues"}}, set()),
    ({"tags": {"icontains": "blues"}}, {"music"}),
    ({"note": {"icontains": "jazz"}}, {"num"}),
    ({"note": {"contains": "jazz"}}, set()),
    ({"tags": {"icontains": "ärger"}}, {"unicode"}),
    ({"tags": {"contains": 5}}, {"unicode"}),
    ({"cat": {"icontains": "MÜS"}}, {"unicode"}),
    ({"a.b": "dotted"}, {"nested"}),
    ({"missing": {"ne": 1}}, ALL),
    ({"missing": {"eq": 1}}, set()),
    ({"cat": "music", "rating": {"gte": 5}}, {"music"}),
    ({"NOT": {"cat": "music"}}, ALL - {"music"}),
    ({"OR": [{"cat": "film"}, {"AND": [{"rating": {"gte": 4}}, {"NOT": {"tags": {"contains": "jazz"}}}]}]},
     {"film", "num"}),
    ({"AND": [{"OR": [{"lang": "en"}, {"lang": "EN"}]}, {"NOT": {"NOT": {"rating": {"lt": 0}}}}]}, {"unicode"}),
]


@pytest.fixture
def filtered(store: MemoryStore) -> MemoryStore:
    store.apply([add(f"common word {name}", id=name, metadata=md, vector=vec(name)) for name, md in DATA.items()])
    store.apply([add("common word for bob", BOB, metadata=DATA["music"])])
    return store


def store_matches(store: MemoryStore, flt: Filter | None) -> dict[str, set[str]]:
    return {"list": set(ids(store.list(ALICE, flt, limit=1000))),
            "vector": set(hit_ids(store.vector_search(ALICE, vec(0), 1000, flt))),
            "text": set(hit_ids(store.text_search(ALICE, "common word", 1000, flt)))}


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_every_filter_operator(filtered: MemoryStore, raw: dict[str, Any], expected: set[str]) -> None:
    flt = parse_filters(raw)
    assert {n for n, md in DATA.items() if matches(flt, md)} == expected  # the reference agrees with us
    got = store_matches(filtered, flt)
    assert got == {"list": expected, "vector": expected, "text": expected}
    assert filtered.count(ALICE, flt) == len(expected)


FIELDS = ["cat", "rating", "tags", "lang", "seen", "note", "year", "missing", "a.b"]
VALUES = st.sampled_from(["music", "film", "jazz", "EN", "en", "ärger", "5", "m", "", 5, 4, 3.5, -2, 0, 1, 1999,
                          True, False, None])


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    op = st.sampled_from(["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "icontains"])
    return st.builds(lambda f, o, v, vs: {f: v if o == "eq" else {o: vs if o in ("in", "nin") else v}},
                     st.sampled_from(FIELDS), op, VALUES, st.lists(VALUES, min_size=1, max_size=3))


FILTERS = st.recursive(_leaf(), lambda inner: st.one_of(
    st.builds(lambda xs: {"AND": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: {"OR": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda x: {"NOT": x}, inner)), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=FILTERS)
def test_compiled_filters_agree_with_the_reference(filtered: MemoryStore, raw: dict[str, Any]) -> None:
    try:
        flt = parse_filters(raw)
    except FilterError:
        return
    expected = {n for n, md in DATA.items() if matches(flt, md)}
    assert set(ids(filtered.list(ALICE, flt, limit=1000))) == expected
    assert set(hit_ids(filtered.vector_search(ALICE, vec(0), 1000, flt))) == expected


# -- iteration, reopening, reindex -------------------------------------------------------------------


def test_iter_records_and_history_in_id_order(store: MemoryStore) -> None:
    store.apply([add(f"fact {i}", SCOPED["uar"] if i % 2 else BOB, id=f"id-{i:03d}") for i in range(25)])
    store.apply([DeleteChange("id-004", BOB), UpdateChange("id-005", SCOPED["uar"], "new five", vec(5))])
    live = list(store.iter_records(batch_size=4))
    assert ids(live) == sorted(f"id-{i:03d}" for i in range(25) if i != 4)
    every = list(store.iter_records(include_deleted=True, batch_size=7))
    assert ids(every) == [f"id-{i:03d}" for i in range(25)]
    assert next(r for r in every if r.id == "id-005").memory == "new five"
    history = list(store.iter_history(batch_size=5))
    assert len(history) == 27 and [h.id for h in history] == sorted(h.id for h in history)
    assert sorted((h.memory_id, h.event) for h in history if h.event != "ADD") == [("id-004", "DELETE"),
                                                                                   ("id-005", "UPDATE")]


def test_reopening_keeps_records_history_and_identity(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.open(IDENT)
    [a, _] = s.apply([add("I live in Paris", metadata={"k": 1}), add("bye", BOB)])
    s.apply([UpdateChange(a.id, ALICE, "I live in Rome", vec("rome"))])
    for _ in range(2):
        s = reopen(store_factory, s)
        s.open(IDENT)
        assert [(r.id, r.memory, r.metadata) for r in s.list(ALICE)] == [(a.id, "I live in Rome", {"k": 1})]
        assert [h.event for h in s.history(a.id)] == ["ADD", "UPDATE"]
        assert hit_ids(s.vector_search(ALICE, vec("rome"), 1)) == [a.id]
        assert hit_ids(s.text_search(ALICE, "rome", 3)) == [a.id]
        assert s.count(BOB) == 1


def test_reindex_to_another_embedder_is_resumable(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.open(IDENT)
    texts = [f"memory number {i}" for i in range(12)]
    results = s.apply([add(t, ALICE if i % 3 else BOB, id=f"r{i:02d}") for i, t in enumerate(texts)])
    new = EmbedderIdentity("test", "wider", 12)
    first = s.reindex_pending(new, limit=5)
    assert len(first) == 5 and len({r.id for r in first}) == 5
    s.write_vectors(new, [(r.id, vec(r.memory, 12)) for r in first])
    with pytest.raises(EmbedderMismatchError):
        s.open(new)  # not complete yet: the old vectors still serve searches
    assert len(s.vector_search(ALICE, vec(1), 20)) == 8
    victim = next(r.id for r in results if r.id not in {f.id for f in first} and int(r.id[1:]) % 3)
    s.apply([add("added during the reindex", id="late"), DeleteChange(victim, ALICE),
             UpdateChange(first[0].id, first[0].scope, "changed during the reindex", vec(7))])
    s = reopen(store_factory, s)
    rest = s.reindex_pending(new, limit=100)
    expected = ({f"r{i:02d}" for i in range(12)} - {r.id for r in first[1:]} - {victim}) | {"late"}
    assert {r.id for r in rest} == expected
    s.write_vectors(new, [(r.id, vec(r.memory, 12)) for r in rest[:2]])
    s.write_vectors(new, [(r.id, vec(r.memory, 12)) for r in rest[2:]])
    assert s.reindex_pending(new, limit=100) == []
    s.open(new)
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        reopen(store_factory, s).open(IDENT)
    live = {r.id: r for r in s.iter_records()}
    assert set(live) == ({f"r{i:02d}" for i in range(12)} - {victim}) | {"late"}
    for rid in ("r00", "late", first[0].id):
        rec = live[rid]
        [(top, score)] = s.vector_search(rec.scope, vec(rec.memory, 12), 1)
        assert top.id == rid and score == pytest.approx(1.0, abs=1e-5)
    assert [h.event for h in s.history(first[0].id)] == ["ADD", "UPDATE"]
    s.apply([add("after the reindex", vector=vec(3, 12))])
    assert s.count(ALICE) == 9


def test_a_store_reindexed_by_another_process_asks_the_running_one_to_restart(store_factory: StoreFactory) -> None:
    running = store_factory()
    running.open(IDENT)
    running.apply([add("kept through the reindex", id="k1")])
    other = reopen(store_factory, running)  # `mindgate reindex` in another process
    new = EmbedderIdentity("test", "wider", 12)
    other.write_vectors(new, [(r.id, vec(r.memory, 12)) for r in other.reindex_pending(new, limit=10)])
    other.open(new)
    with pytest.raises(EmbedderMismatchError, match="reindexed by another process") as searching:
        running.vector_search(ALICE, vec(1), 5)
    with pytest.raises(EmbedderMismatchError, match="reindexed by another process") as writing:
        running.apply([add("written after it")])
    for failure in (searching.value, writing.value):
        assert failure.hint is not None and "restart" in failure.hint and "mindgate reindex" not in failure.hint
    assert [r.id for r in other.list(ALICE)] == ["k1"]  # the refused write left nothing behind


def test_reindex_of_an_empty_store_switches_identity(store: MemoryStore) -> None:
    new = EmbedderIdentity("test", "other", 4)
    assert store.reindex_pending(new, limit=10) == []
    store.write_vectors(new, [])
    store.open(new)
    with pytest.raises(EmbedderMismatchError):
        store.open(IDENT)


def test_filters_at_their_size_limits_compile_within_the_databases_limits(filtered: MemoryStore) -> None:
    # an `in` list of MAX_VALUES values is one bound array (an OR chain of 994 hit SQLite's depth limit)
    many = [f"value-{i}" for i in range(MAX_VALUES - 2)] + ["music", 5]
    assert store_matches(filtered, parse_filters({"cat": {"in": many}})) == {k: {"music"} for k in
                                                                             ("list", "vector", "text")}
    assert store_matches(filtered, parse_filters({"rating": {"nin": many}}))["list"] == set(DATA) - {"music"}
    ors = {"OR": [{"cat": f"value-{i}"} for i in range(MAX_TERMS - 1)] + [{"cat": "film"}]}
    assert store_matches(filtered, parse_filters(ors))["list"] == {"film"}
    with pytest.raises(FilterError, match=f"limit is {MAX_TERMS}"):
        parse_filters({"OR": [{"cat": f"v{i}"} for i in range(MAX_TERMS + 1)]})
    with pytest.raises(FilterError, match=f"limit is {MAX_VALUES}"):
        parse_filters({"cat": {"in": list(range(MAX_VALUES + 1))}})


def test_stored_responses_round_trip_expire_purge_and_delete(store: MemoryStore) -> None:
    from mindgate.memory.stores._base import StoredResponse

    body = {"id": "resp_1", "object": "response", "output": [{"type": "message", "content": [{"text": "héllo"}]}]}
    items = [{"type": "message", "id": "msg_1", "role": "user", "content": "hi"}]
    context = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "héllo"}]
    store.put_response(StoredResponse("resp_1", "alice", 100.0, 200.0, body, items, context))
    store.put_response(StoredResponse("resp_2", None, 100.0, None, body, [], []))
    got = store.get_response("resp_1", now=150.0)
    assert got == StoredResponse("resp_1", "alice", 100.0, 200.0, body, items, context)
    assert store.get_response("resp_1", now=200.0) is None  # expired: invisible at once
    assert store.get_response("missing", now=0.0) is None
    store.put_response(StoredResponse("resp_1", "alice", 100.0, 300.0, {**body, "status": "completed"}, items, []))
    replaced = store.get_response("resp_1", now=250.0)
    assert replaced is not None and replaced.response["status"] == "completed" and replaced.context == []
    assert store.purge_responses(now=400.0) == 1  # resp_1 expired; resp_2 is kept forever
    assert store.get_response("resp_2", now=1e12) is not None
    assert store.delete_response("resp_2") and not store.delete_response("resp_2")
