"""pgvector reindex to an embedder of another dimension, on a real PostgreSQL: staged in a column,
resumable from a fresh process, safe against writes made meanwhile, and swapped in one transaction
(the column type, the HNSW index and the recorded identity change together)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")

import psycopg

from mindgate.errors import EmbedderMismatchError, StoreError
from mindgate.memory.stores._base import AddChange, DeleteChange, MemoryRecord, Scope, UpdateChange, content_hash
from mindgate.memory.stores._pgvector import PgVectorStore
from mindgate.providers._base import EmbedderIdentity

OLD = EmbedderIdentity("test", "old", 8)
NEW = EmbedderIdentity("test", "new", 16)
OTHER = EmbedderIdentity("test", "other", 4)
ALICE = Scope(user_id="alice")
Factory = Callable[..., PgVectorStore]


def embed(text: str, dims: int) -> np.ndarray:
    """A deterministic stand-in embedder: the same text gives the same unit vector."""
    v = np.random.default_rng(abs(hash((text, dims))) % 2**32).standard_normal(dims).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def admin(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def old(pg_store_factory: Factory) -> PgVectorStore:
    """A store built with OLD: 30 live facts and 3 deleted ones."""
    store = pg_store_factory()
    store.open(OLD)
    texts = [f"fact number {i}" for i in range(33)]
    store.apply([AddChange(MemoryRecord(id=f"m{i:03d}", memory=t, hash=content_hash(t), scope=ALICE), embed(t, 8))
                 for i, t in enumerate(texts)])
    store.apply([DeleteChange(f"m{i:03d}", ALICE) for i in (30, 31, 32)])
    return store


def step(store: PgVectorStore, identity: EmbedderIdentity, limit: int) -> int:
    """One reindex step as `mindgate reindex` runs it; returns how many records it embedded."""
    pending = store.reindex_pending(identity, limit=limit)
    if pending:
        store.write_vectors(identity, [(r.id, embed(r.memory, identity.dims)) for r in pending])
    return len(pending)


def column_type(admin: psycopg.Connection[Any], store: PgVectorStore) -> str | None:
    row = admin.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                        "AND attname = 'embedding'", [f'"{store.collection}_memories"']).fetchone()
    return str(row[0]) if row else None


def has_index(admin: psycopg.Connection[Any], name: str) -> bool:
    return admin.execute("SELECT to_regclass(%s)", [f'"{name}"']).fetchone() != (None,)


def test_reindex_resumes_in_a_new_process_and_swaps_at_the_end(old: PgVectorStore, pg_store_factory: Factory,
                                                               admin: psycopg.Connection[Any]) -> None:
    first = pg_store_factory(reopen=old)
    with pytest.raises(EmbedderMismatchError, match="mindgate reindex"):
        first.open(NEW)
    assert step(first, NEW, limit=12) == 12
    first.close()  # "crash": the next process picks up where this one stopped

    second = pg_store_factory(reopen=old)
    with pytest.raises(EmbedderMismatchError, match="a reindex to it is in progress"):
        second.open(NEW)
    assert len(second.reindex_pending(NEW, limit=100)) == 18
    # meanwhile the old embedder still serves searches
    assert old.vector_search(ALICE, embed("fact number 3", 8), 1)[0][0].id == "m003"
    assert column_type(admin, old) == "vector(8)"
    while step(second, NEW, limit=7):
        pass

    assert second.recorded_identity() == NEW
    assert column_type(admin, old) == "vector(16)"
    assert has_index(admin, f"{old.collection}_mem_hnsw")
    assert not has_index(admin, f"{old.collection}_mem_pending")
    second.open(NEW)
    hits = second.vector_search(ALICE, embed("fact number 21", 16), 3)
    assert hits[0][0].id == "m021" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert second.count(ALICE) == 30
    with pytest.raises(EmbedderMismatchError):
        pg_store_factory(reopen=old).open(OLD)
    # a stale writer is stopped, and told to restart
    with pytest.raises(EmbedderMismatchError, match=r"reindexed by another process.*embeds with test:old"):
        old.apply([AddChange(MemoryRecord(id="late", memory="late", hash=content_hash("late"), scope=ALICE),
                             embed("late", 8))])


def test_writes_during_a_reindex_are_picked_up_before_the_swap(old: PgVectorStore, pg_store_factory: Factory) -> None:
    reindexer = pg_store_factory(reopen=old)
    assert step(reindexer, NEW, limit=29) == 29
    remaining = reindexer.reindex_pending(NEW, limit=100)
    assert len(remaining) == 1
    # the running app adds a fact and edits one that was already re-embedded
    old.apply([AddChange(MemoryRecord(id="fresh", memory="a fresh fact", hash=content_hash("a fresh fact"),
                                      scope=ALICE), embed("a fresh fact", 8)),
               UpdateChange("m000", ALICE, "fact number zero, edited", embed("fact number zero, edited", 8))])
    pending = {r.id: r.memory for r in reindexer.reindex_pending(NEW, limit=100)}
    assert pending == {remaining[0].id: remaining[0].memory, "fresh": "a fresh fact",
                       "m000": "fact number zero, edited"}
    while step(reindexer, NEW, limit=10):
        pass
    reindexer.open(NEW)
    top = reindexer.vector_search(ALICE, embed("fact number zero, edited", 16), 1)[0]
    assert top[0].id == "m000" and top[1] == pytest.approx(1.0, abs=1e-5)  # the edit's vector, not the stale one


def test_changing_the_target_embedder_restarts_the_staging(old: PgVectorStore, pg_store_factory: Factory) -> None:
    reindexer = pg_store_factory(reopen=old)
    step(reindexer, NEW, limit=20)
    assert len(reindexer.reindex_pending(NEW, limit=100)) == 10
    assert len(reindexer.reindex_pending(OTHER, limit=100)) == 30  # NEW's staged vectors are discarded
    with pytest.raises(StoreError, match="no reindex to test:new"):
        reindexer.write_vectors(NEW, [("m000", embed("fact number 0", 16))])
    while step(reindexer, OTHER, limit=30):
        pass
    assert reindexer.recorded_identity() == OTHER


def test_vectors_of_the_wrong_dimension_never_reach_the_staging(old: PgVectorStore) -> None:
    old.reindex_pending(NEW, limit=5)
    with pytest.raises(Exception, match="16-dimensional"):
        old.write_vectors(NEW, [("m000", embed("x", 8))])
    assert len(old.reindex_pending(NEW, limit=100)) == 30
