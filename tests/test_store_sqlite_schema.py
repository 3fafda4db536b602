"""SQLite store specifics: the file path, schema migrations, error translation, vector-space bookkeeping."""

from __future__ import annotations

import os
from pathlib import Path

import apsw
import numpy as np
import pytest
import sqlite_vec

from mindgate.errors import InvalidRequestError, StoreError
from mindgate.memory._filters import parse_filters
from mindgate.memory.stores._base import AddChange, DeleteChange, MemoryRecord, Scope, UpdateChange, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.memory.stores._sqlite_conn import migrate, migrations
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "schema", 4)
U = Scope(user_id="u")


def add(text: str, metadata: dict[str, object] | None = None) -> AddChange:
    return AddChange(MemoryRecord(id=text, memory=text, hash=content_hash(text), scope=U, metadata=metadata or {}),
                     np.array([1, 2, 3, 4], np.float32))


def raw(path: Path) -> apsw.Connection:
    return apsw.Connection(str(path))


# -- path ------------------------------------------------------------------------------------------


def test_a_missing_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "memory.db"
    store = SQLiteStore(path)
    assert path.is_file() and store.path == path
    store.close()


def test_a_directory_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory") as err:
        SQLiteStore(tmp_path)
    assert "memory.db" in str(err.value)


def test_a_path_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the directory"):
        SQLiteStore(tmp_path / "plain.txt" / "memory.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            SQLiteStore(locked / "memory.db")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("path", [":memory:", "", "file:x?mode=memory"])
def test_in_memory_databases_are_refused(path: str) -> None:
    with pytest.raises(StoreError, match="needs a file path"):
        SQLiteStore(path)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 200)
    with pytest.raises(StoreError, match="damaged or not a SQLite database") as err:
        SQLiteStore(path)
    assert str(path) in str(err.value) and "backup" in str(err.value)


def test_busy_timeout_must_be_a_non_negative_int(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="busy_timeout_ms"):
        SQLiteStore(tmp_path / "m.db", busy_timeout_ms=-1)


# -- migrations ------------------------------------------------------------------------------------


def test_the_schema_version_is_recorded_and_reopening_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    latest = migrations()[-1][0]
    store = SQLiteStore(path)
    store.open(IDENT)
    store.apply([add("kept")])
    store.close()
    assert raw(path).execute("PRAGMA user_version").fetchall() == [(latest,)]
    again = SQLiteStore(path)
    again.open(IDENT)
    assert [r.memory for r in again.list(U)] == ["kept"]
    assert raw(path).execute("PRAGMA user_version").fetchall() == [(latest,)]
    again.close()


def test_pending_migrations_are_applied_in_order_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = raw(path)
    steps = migrations()
    assert migrate(conn, path, 1000, available=steps) == len(steps)
    extra = [*steps, (len(steps) + 1, "900_test.sql", "CREATE TABLE added_later (x INTEGER);"),
             (len(steps) + 2, "901_test.sql", "INSERT INTO added_later VALUES (42);")]
    assert migrate(conn, path, 1000, available=extra) == len(steps) + 2
    assert migrate(conn, path, 1000, available=extra) == len(steps) + 2  # nothing re-runs
    assert conn.execute("SELECT x FROM added_later").fetchall() == [(42,)]
    conn.close()


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = raw(path)
    steps = migrations()
    broken = [*steps, (len(steps) + 1, "900_ok.sql", "CREATE TABLE t1 (x);"),
              (len(steps) + 2, "901_bad.sql", "CREATE TABLE t2 (x); THIS IS NOT SQL;")]
    with pytest.raises(StoreError):
        migrate(conn, path, 1000, available=broken)
    assert conn.execute("PRAGMA user_version").fetchall() == [(0,)]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name IN ('t1', 't2', 'memories')").fetchall() == []
    conn.close()


def test_a_store_from_a_newer_mindgate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = raw(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="newer than this mindgate") as err:
        SQLiteStore(path)
    assert "upgrade mindgate" in str(err.value)


def test_a_store_of_schema_4_gets_partition_versions(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = SQLiteStore(path)
    store.open(IDENT)
    store.apply([add("kept"), add("gone")])
    store.close()
    conn = raw(path)  # back to schema 4, as a store written by the previous mindgate is
    conn.execute("DROP TRIGGER memories_added_version; DROP TRIGGER memories_changed_version; "
                 "DROP TRIGGER memories_removed_version; ALTER TABLE partitions DROP COLUMN version; "
                 "PRAGMA user_version = 4")
    v4 = raw(tmp_path / "v4.db")
    migrate(v4, tmp_path / "v4.db", 1000, available=migrations()[:4])
    schema = ("SELECT type, name FROM sqlite_master WHERE name NOT LIKE '%memories_vec%' "
              "AND name != 'sqlite_sequence' ORDER BY name")
    assert conn.execute(schema).fetchall() == v4.execute(schema).fetchall()
    v4.close()
    conn.close()
    again = SQLiteStore(path)
    again.open(IDENT)
    try:
        [(partition, version)] = raw(path).execute("SELECT partition, version FROM partitions").fetchall()
        assert partition == U.partition
        again.apply([DeleteChange("gone", U)])
        assert raw(path).execute("SELECT version FROM partitions").fetchall() != [(version,)]
        assert raw(path).execute("PRAGMA user_version").fetchall() == [(migrations()[-1][0],)]
        assert [r.memory for r, _ in again.text_search(U, "kept gone", 5)] == ["kept"]
    finally:
        again.close()


# -- misuse ----------------------------------------------------------------------------------------


def test_writing_before_open_is_a_clear_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    with pytest.raises(StoreError, match=r"store\.open"):
        store.apply([add("too early")])
    store.close()


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count(U)


def test_write_vectors_without_a_reindex_in_progress(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    store.open(IDENT)
    with pytest.raises(StoreError, match="reindex_pending"):
        store.write_vectors(EmbedderIdentity("test", "other", 4), [("x", np.ones(4, np.float32))])
    store.close()


def test_metadata_must_be_json(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    store.open(IDENT)
    for bad in ({"x": float("nan")}, {"x": object()}):
        with pytest.raises(InvalidRequestError, match="metadata"):
            store.apply([add("bad", bad)])
    assert store.count(U) == 0
    store.close()


def test_filter_values_with_quotes_are_bound_not_spliced(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    store.open(IDENT)
    tricky = "it's \"quoted\" ') OR 1=1 --"
    store.apply([add("one", {"note": tricky}), add("two", {"note": "plain"})])
    assert [r.id for r in store.list(U, parse_filters({"note": tricky}))] == ["one"]
    assert [r.id for r in store.list(U, parse_filters({"note": {"contains": "') OR 1=1"}}))] == ["one"]
    store.close()


# -- vector spaces ---------------------------------------------------------------------------------


def _tables(path: Path) -> set[str]:
    conn = raw(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%vec0%'")}
    conn.close()
    return names


def test_a_finished_reindex_drops_the_old_vectors_and_deletes_drop_vectors(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = SQLiteStore(path)
    store.open(IDENT)
    store.apply([add("a"), add("b"), add("c")])
    store.apply([DeleteChange("b", U), UpdateChange("c", U, "c2", np.array([4, 3, 2, 1], np.float32))])
    assert _tables(path) == {"memories_vec_1"}
    conn = raw(path)
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    live = sorted(r[0] for r in conn.execute("SELECT rowid FROM memories WHERE id IN ('a', 'c')"))
    assert sorted(r[0] for r in conn.execute("SELECT rowid FROM memories_vec_1")) == live
    assert sorted(r[0] for r in conn.execute("SELECT rowid FROM memories_fts")) == live
    new = EmbedderIdentity("test", "schema-2", 6)
    pending = store.reindex_pending(new, limit=10)
    assert _tables(path) == {"memories_vec_1", "memories_vec_2"}
    store.write_vectors(new, [(r.id, np.arange(1, 7, dtype=np.float32)) for r in pending])
    assert _tables(path) == {"memories_vec_2"}
    assert sorted(r[0] for r in conn.execute("SELECT rowid FROM memories_vec_2")) == live
    conn.close()
    store.close()


def test_switching_the_reindex_target_starts_over(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    store.open(IDENT)
    store.apply([add(f"fact {i}") for i in range(6)])
    first = EmbedderIdentity("test", "first-try", 5)
    done = store.reindex_pending(first, limit=4)
    store.write_vectors(first, [(r.id, np.ones(5, np.float32)) for r in done])
    second = EmbedderIdentity("test", "second-try", 5)
    assert len(store.reindex_pending(second, limit=100)) == 6
    with pytest.raises(StoreError, match="reindex_pending"):
        store.write_vectors(first, [(done[0].id, np.ones(5, np.float32))])
    store.close()


def test_every_connection_gets_the_durability_settings(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    conn = store._db.get()
    assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    assert conn.execute("PRAGMA synchronous").fetchall() == [(2,)]  # FULL
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchall() == [(10000,)]
    assert conn.execute("PRAGMA busy_timeout").fetchall() == [(30000,)]
    store.close()
