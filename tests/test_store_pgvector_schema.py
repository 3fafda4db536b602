"""pgvector store schema, read from PostgreSQL's catalog: ready to be distributed by scope on Citus
(the partition column leads every primary key, unique index and foreign key), numbered migrations that
run once, an HNSW cosine index that the planner uses, and exact results where it cannot help."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")

import psycopg

from fixtures_pg import drop_collection
from mindgate.config import PgVectorStoreConfig
from mindgate.memory.stores import _pg_schema as pg_schema
from mindgate.memory.stores._base import AddChange, MemoryRecord, Scope, content_hash
from mindgate.memory.stores._pgvector import PgVectorStore
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "unit-vectors", 8)
Factory = Callable[..., PgVectorStore]
DISTRIBUTED = ("memories", "history", "summaries")
REFERENCE = ("embedder", "schema_version")
BY_ID = ("responses",)  # stored responses: distributable by their own id, never joined with memories


@pytest.fixture
def admin(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def store(pg_store_factory: Factory) -> PgVectorStore:
    s = pg_store_factory()
    s.open(IDENT)
    return s


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(store: PgVectorStore, scope: Scope, vectors: np.ndarray, prefix: str) -> None:
    changes = [AddChange(MemoryRecord(id=f"{prefix}{i:05d}", memory=f"{prefix} fact {i}",
                                      hash=content_hash(f"{prefix} fact {i}"), scope=scope), v)
               for i, v in enumerate(vectors)]
    for start in range(0, len(changes), 500):
        store.apply(changes[start:start + 500])


def key_columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, bool, list[str]]]:
    """(index name, is primary or unique, its columns in order) for every index of ``table``."""
    rows = conn.execute(
        "SELECT c.relname, i.indisprimary OR i.indisunique, "
        "array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
        [f'"{table}"']).fetchall()
    return [(r[0], r[1], list(r[2])) for r in rows]


def test_partition_leads_every_primary_key_unique_index_and_foreign_key(
        store: PgVectorStore, admin: psycopg.Connection[Any]) -> None:
    for name in DISTRIBUTED:
        table = f"{store.collection}_{name}"
        unique = [(idx, cols) for idx, is_unique, cols in key_columns(admin, table) if is_unique]
        assert unique, f"{table} has no primary key"
        for idx, cols in unique:
            assert cols[0] == "partition", f"{idx} on {table} starts with {cols}"
        notnull = admin.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass "
                                "AND attname = 'partition'", [f'"{table}"']).fetchone()
        assert notnull == (True,)
    fks = admin.execute(
        "SELECT conrelid::regclass::text, confrelid::regclass::text, "
        "(SELECT attname FROM pg_attribute WHERE attrelid = conrelid AND attnum = conkey[1]), "
        "(SELECT attname FROM pg_attribute WHERE attrelid = confrelid AND attnum = confkey[1]) "
        "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text LIKE %s",
        [f"{store.collection}%"]).fetchall()
    assert fks == [(f"{store.collection}_history", f"{store.collection}_memories", "partition", "partition")]
    # co-location needs the same distribution column type and collation on both tables
    kinds = admin.execute("SELECT DISTINCT atttypid, attcollation FROM pg_attribute WHERE attname = 'partition' "
                          "AND attrelid = ANY(%s::regclass[])",
                          [[f'"{store.collection}_{t}"' for t in DISTRIBUTED]]).fetchall()
    assert len(kinds) == 1


def test_the_dedupe_constraint_is_a_partial_unique_index_on_the_exact_scope(
        store: PgVectorStore, admin: psycopg.Connection[Any]) -> None:
    row = admin.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                        [f"{store.collection}_mem_dedupe"]).fetchone()
    assert row is not None
    assert "UNIQUE INDEX" in row[0] and "(partition, scope_key, hash)" in row[0]
    assert "WHERE (deleted_at IS NULL)" in row[0]


def test_tables_are_exactly_the_documented_ones(store: PgVectorStore, admin: psycopg.Connection[Any]) -> None:
    tables = {r[0] for r in admin.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s",
                                          [f"{store.collection}\\_%"]).fetchall()}
    assert tables == {f"{store.collection}_{t}" for t in (*DISTRIBUTED, *REFERENCE, *BY_ID)}
    dims = admin.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                         "AND attname = 'embedding'", [f'"{store.collection}_memories"']).fetchone()
    assert dims == ("vector(8)",)


def test_migrations_are_numbered_and_run_once_even_when_opened_concurrently(
        pg_store_factory: Factory, admin: psycopg.Connection[Any]) -> None:
    name = f"t{uuid.uuid4().hex[:12]}"
    stores = [pg_store_factory(collection_name=name) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: s.open(IDENT), stores))
    pg_store_factory(collection_name=name).open(IDENT)  # and again, later
    versions = [r[0] for r in admin.execute(f'SELECT version FROM "{name}_schema_version" ORDER BY version')]
    assert versions == list(range(1, pg_schema.LATEST_VERSION + 1))
    assert admin.execute(f'SELECT slot, dims FROM "{name}_embedder"').fetchall() == [("current", 8)]


@pytest.fixture(scope="module")
def two_partitions(pg_dsn: str) -> Iterator[tuple[PgVectorStore, np.ndarray, np.ndarray]]:
    """One store holding a big partition (2,000 vectors) and a small one (7), analysed."""
    store = PgVectorStore(PgVectorStoreConfig(dsn=pg_dsn, collection_name=f"t{uuid.uuid4().hex[:12]}"))
    store.open(IDENT)
    big, small = unit(2000, seed=3), unit(7, seed=4)
    fill(store, Scope(user_id="big"), big, "b")
    fill(store, Scope(user_id="small"), small, "s")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{store.collection}_memories"')
    yield store, big, small
    store.close()
    drop_collection(pg_dsn, store.collection)


def test_the_planner_uses_the_hnsw_index_for_nearest_neighbours(
        two_partitions: tuple[PgVectorStore, np.ndarray, np.ndarray], admin: psycopg.Connection[Any]) -> None:
    store = two_partitions[0]
    q = "[" + ",".join(str(x) for x in unit(1, seed=2)[0]) + "]"
    plan = "\n".join(r[0] for r in admin.execute(
        f'EXPLAIN SELECT id FROM "{store.collection}_memories" m WHERE m.partition = %s '
        "AND m.deleted_at IS NULL AND m.embedding IS NOT NULL ORDER BY m.embedding <=> %s::vector LIMIT 5",
        ["user:big", q]))
    assert f"{store.collection}_mem_hnsw" in plan


def test_a_small_partition_beside_a_big_one_gets_the_exact_top_k(
        two_partitions: tuple[PgVectorStore, np.ndarray, np.ndarray]) -> None:
    store, _, small = two_partitions
    query = unit(1, seed=5)[0]
    hits = store.vector_search(Scope(user_id="small"), query, 5)
    expected = np.argsort(-(small @ query))[:5]
    assert [r.id for r, _ in hits] == [f"s{i:05d}" for i in expected]
    assert [round(s, 4) for _, s in hits] == [round(float(small[i] @ query), 4) for i in expected]


def test_approximate_search_in_a_big_partition_finds_the_true_neighbours(
        two_partitions: tuple[PgVectorStore, np.ndarray, np.ndarray]) -> None:
    store, big, _ = two_partitions
    recall = []
    for seed in range(10):
        query = unit(1, seed=100 + seed)[0]
        truth = {f"b{i:05d}" for i in np.argsort(-(big @ query))[:10]}
        got = {r.id for r, _ in store.vector_search(Scope(user_id="big"), query, 10)}
        recall.append(len(truth & got) / 10)
    assert np.mean(recall) >= 0.9


def test_without_hnsw_no_index_is_built_and_search_is_exact(pg_store_factory: Factory,
                                                            admin: psycopg.Connection[Any]) -> None:
    store = pg_store_factory(hnsw=False)
    store.open(IDENT)
    vectors = unit(50, seed=7)
    fill(store, Scope(user_id="u"), vectors, "v")
    assert admin.execute("SELECT to_regclass(%s)", [f'"{store.collection}_mem_hnsw"']).fetchone() == (None,)
    query = unit(1, seed=8)[0]
    assert [r.id for r, _ in store.vector_search(Scope(user_id="u"), query, 3)] == \
        [f"v{i:05d}" for i in np.argsort(-(vectors @ query))[:3]]


def test_size_counts_tables_and_indexes(two_partitions: tuple[PgVectorStore, np.ndarray, np.ndarray],
                                        admin: psycopg.Connection[Any]) -> None:
    store = two_partitions[0]
    heap = admin.execute("SELECT pg_relation_size(%s::regclass)", [f'"{store.collection}_memories"']).fetchone()
    assert heap is not None and store.size_bytes() > 2 * heap[0] > 2007 * 8 * 4
