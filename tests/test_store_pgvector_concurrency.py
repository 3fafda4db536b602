"""pgvector store under concurrency, on a real PostgreSQL: the dedupe constraint holds across racing
threads, a transaction is seen whole or not at all, and the connection pool stays within ``maxconn``,
survives failed transactions and recovers when the server drops its connections."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")

import psycopg

from mindgate.errors import InvalidRequestError, NotFoundError
from mindgate.memory.stores._base import AddChange, ChangeResult, DeleteChange, MemoryRecord, Scope, content_hash
from mindgate.memory.stores._pgvector import PgVectorStore
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "unit-vectors", 8)
ALICE = Scope(user_id="alice")
Factory = Callable[..., PgVectorStore]


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


def add(text: str, scope: Scope = ALICE, memory_id: str | None = None) -> AddChange:
    rec = MemoryRecord(id=memory_id or uuid.uuid4().hex, memory=text, hash=content_hash(text), scope=scope)
    return AddChange(rec, vec(len(text)))


@pytest.fixture
def opened(pg_store_factory: Factory) -> Callable[..., PgVectorStore]:
    def make(**config: Any) -> PgVectorStore:
        store = pg_store_factory(**config)
        store.open(IDENT)
        return store
    return make


def backends(dsn: str, store: PgVectorStore) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           [f"mindgate:{store.collection}"]).fetchone()
    return int(row[0]) if row else 0


def test_threads_adding_the_same_fact_store_one_row(opened: Callable[..., PgVectorStore], pg_dsn: str) -> None:
    store = opened(maxconn=8)
    threads = 12
    barrier = threading.Barrier(threads)

    def one(i: int) -> ChangeResult:
        change = add("Alice  likes TEA #x" if i % 2 else "alice likes tea #x")  # same normalised text
        barrier.wait()
        return store.apply([change])[0]

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, range(threads)))
    added = [r for r in results if r.event == "ADD"]
    assert len(added) == 1
    assert {r.event for r in results} == {"ADD", "NONE"}
    assert {r.id for r in results} == {added[0].id}
    assert store.count(ALICE) == 1
    assert [h.event for h in store.history(added[0].id)] == ["ADD"]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT count(*) FROM "{store.collection}_memories"').fetchone()
    assert rows == (1,)


def test_concurrent_distinct_writes_all_land(opened: Callable[..., PgVectorStore]) -> None:
    store = opened(maxconn=4)

    def batch(t: int) -> None:
        for i in range(10):
            store.apply([add(f"thread {t} fact {i}"), add(f"thread {t} other fact {i}")])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(batch, range(6)))
    assert store.count(ALICE) == 120
    assert sum(1 for _ in store.iter_history()) == 120


def test_a_batch_is_seen_whole_or_not_at_all(opened: Callable[..., PgVectorStore]) -> None:
    writer = opened()
    reader = opened(reopen=writer)
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(reader.count(ALICE))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        writer.apply([add(f"fact number {i}") for i in range(300)])
    finally:
        done.set()
        watcher.join()
    seen.add(reader.count(ALICE))
    assert seen <= {0, 300} and 300 in seen


def test_the_pool_never_opens_more_than_maxconn(opened: Callable[..., PgVectorStore], pg_dsn: str) -> None:
    store = opened(minconn=1, maxconn=2)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, backends(pg_dsn, store))

    def work(i: int) -> None:
        store.apply([add(f"pool fact {i}")])
        store.vector_search(ALICE, vec(i), 3)
        store.text_search(ALICE, "pool fact", 3)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(40)))
    finally:
        stop.set()
        sampler.join()
    assert store.count(ALICE) == 40
    assert 1 <= peak <= 2


def test_failed_transactions_do_not_poison_a_one_connection_pool(opened: Callable[..., PgVectorStore]) -> None:
    store = opened(minconn=1, maxconn=1)
    store.apply([add("first", memory_id="m1")])
    assert store.apply([add("first", memory_id="m1")])[0].event == "NONE"  # a retried ADD is harmless
    with pytest.raises(NotFoundError):
        store.apply([add("never stored"), DeleteChange("missing", ALICE)])
    with pytest.raises(InvalidRequestError, match="already exists"):  # detected by SQL, inside the transaction
        store.apply([add("also never stored"), add("same id elsewhere", Scope(user_id="bob"), memory_id="m1")])
    store.apply([add("second")])
    assert sorted(r.memory for r in store.list(ALICE)) == ["first", "second"]
    assert store.count(Scope(user_id="bob")) == 0


def test_the_pool_recovers_when_the_server_drops_its_connections(opened: Callable[..., PgVectorStore],
                                                                   pg_dsn: str) -> None:
    store = opened(minconn=2, maxconn=2)
    store.apply([add("before the outage")])
    assert backends(pg_dsn, store) >= 1
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE application_name = %s", [f"mindgate:{store.collection}"]).fetchone()
    assert killed and killed[0] >= 1
    store.apply([add("after the outage")])
    assert store.count(ALICE) == 2
