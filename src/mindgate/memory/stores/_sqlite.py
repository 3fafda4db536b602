"""The embedded memory store: one SQLite file (apsw + sqlite-vec + FTS5), WAL, one transaction per write.

Implements :class:`~mindgate.memory.stores._base.MemoryStore`; the semantics are in that module's
docstring. Choices specific to this store:

* **Layout.** ``memories`` holds every record (soft-deleted ones too); the vector (a sqlite-vec ``vec0``
  table with the scope partition as its ``partition key`` and cosine distance) and the FTS5 row exist
  only while a record is live, so searches never see deleted records and nothing orphaned remains.
* **Vector spaces.** Each embedder identity gets its own ``vec0`` table (``memories_vec_<gen>``) sized
  to its dims; ``vector_spaces`` names the active one. A reindex fills a *staging* space, resumably
  (``memories.vec_gen`` records which space holds a record's newest vector), and swaps it in, in the
  transaction that writes its last vector.
* **Filtered vector search** is exact: the filtered rows of the partition (a plain SQL query on
  ``memories``) are handed to the vec0 KNN as a ``rowid IN (...)`` constraint, so the k nearest of the
  matching rows are found even when the filter is very selective (over-fetch + post-filter would not).
  Cost is linear in the partition's size, like the unfiltered KNN (vec0 is brute force).
* **Unfiltered vector search** of a partition of 256 vectors or more, searched at least twice since the
  last write to it, runs in numpy over an in-memory copy of its vectors (``_sqlite_vectors``, bounded
  by ``vector_cache_mb``, valid for one version of the partition: a write to another partition, by any
  process, keeps it) with vec0's exact scores: ~7x faster than vec0 at 1,000 vectors, ~50x at 5,000;
  other searches use vec0.
* **Full-text search** ORs the query's words, each a quoted FTS5 string (user text is never FTS5
  syntax), inside the partition, ranked by ``bm25()``; the score is ``-bm25`` (higher is better).
* **Dedupe of an UPDATE.** An UPDATE whose new text duplicates another live record in the same exact
  scope cannot keep both (the unique constraint); the updated record is merged into the existing one:
  it is soft-deleted (history: DELETE) and its result is ``DELETE``.
* ``k`` above 4096 (sqlite-vec's KNN limit) is treated as 4096.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from mindgate.errors import EmbedderMismatchError, InvalidRequestError, NotFoundError, StoreError
from mindgate.memory._filters import Filter
from mindgate.memory.stores._base import (
    AddChange,
    Candidate,
    Change,
    ChangeResult,
    DeleteChange,
    HistoryRecord,
    MemoryRecord,
    MemoryStore,
    Scope,
    UpdateChange,
    check_count,
    check_identity,
    content_hash,
    keyset_pages,
    reindexed_since_open,
    utcnow,
)
from mindgate.memory.stores._sqlite_cache import Counts, all_versions_moved, partition_state
from mindgate.memory.stores._sqlite_conn import Connections, validate_path
from mindgate.memory.stores._sqlite_import import import_history, import_record
from mindgate.memory.stores._sqlite_reindex import SQLiteReindex
from mindgate.memory.stores._sqlite_responses import SQLiteResponses
from mindgate.memory.stores._sqlite_spaces import CHUNK_SIZE, MAX_DIMS, Space, create_space, drop_vectors, find_space
from mindgate.memory.stores._sqlite_sql import (
    CANDIDATES,
    RECORD_COLUMNS,
    RECORDS,
    SCOPES_SQL,
    RowReader,
    T,
    all_rows,
    by_rowids,
    iso,
    metadata_json,
    new_id,
    one_row,
    scope_sql,
    similarity,
    slot_range,
    to_history,
    to_record,
    vector_blob,
    where_sql,
)
from mindgate.memory.stores._sqlite_summaries import SQLiteSummaries
from mindgate.memory.stores._sqlite_text import content_words, prune, query_tokens
from mindgate.memory.stores._sqlite_text import ranked as bm25_ranked
from mindgate.memory.stores._sqlite_vectors import PartitionVectors, cache_bytes
from mindgate.providers._base import EmbedderIdentity, Vector

MAX_K = 4096
_HISTORY_INSERT = ("INSERT INTO history (id, memory_id, event, old_memory, new_memory, created_at, actor) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)")


@dataclass
class _Delta:
    """What one apply() transaction did to a partition's active vectors, to patch the in-memory copy held
    of it at version ``before`` (read before the transaction's first change of the partition)."""

    before: int
    removed: set[int] = field(default_factory=set)
    added: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def add(self, rowid: int, blob: bytes) -> None:
        self.added.append((rowid, np.frombuffer(blob, dtype=np.float32)))

    def remove(self, rowid: int) -> None:
        self.added = [(r, v) for r, v in self.added if r != rowid]
        self.removed.add(rowid)


@dataclass
class _Txn:
    """One apply() transaction: its connection, timestamp, vector spaces, partitions it created, and per
    partition it changed, its vector delta (None: no copy of it is held, nothing to patch)."""

    conn: apsw.Connection
    now: str
    active: Space
    staging: Space | None
    new_slots: dict[str, int] = field(default_factory=dict)
    deltas: dict[str, _Delta | None] = field(default_factory=dict)


class SQLiteStore(SQLiteResponses, SQLiteSummaries, SQLiteReindex, MemoryStore):
    """A memory store in one SQLite file at ``path`` (its directory is created when missing).

    ``busy_timeout_ms`` is how long a write waits for another writer's lock before failing with a
    :class:`~mindgate.errors.StoreError`. ``vector_cache_mb`` bounds the in-memory copies of searched
    partitions' vectors (None: :func:`~._sqlite_vectors.default_cache_mb`; 0: none). Thread-safe: each
    thread gets its own connection.
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 30000, vector_cache_mb: int | None = None) -> None:
        if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
            raise InvalidRequestError(f"busy_timeout_ms must be a non-negative integer, got {busy_timeout_ms!r}")
        cache = cache_bytes(vector_cache_mb)
        self.path = validate_path(path)
        self._db = Connections(self.path, busy_timeout_ms)
        self._identity: EmbedderIdentity | None = None
        self._slots: dict[str, int] = {}
        self._vectors = PartitionVectors(max_bytes=cache, chunk_size=CHUNK_SIZE)
        self._counts = Counts()
        self._db.get()  # fail here, not at the first write, when the file cannot be opened or migrated

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    # -- identity --------------------------------------------------------------------------------

    def open(self, identity: EmbedderIdentity) -> None:
        check_identity(identity, MAX_DIMS)
        with self._db.read() as conn:
            active = find_space(conn, "active")
        if active is None:
            with self._db.write() as conn:
                active = find_space(conn, "active") or create_space(conn, identity, "active")
        if active.identity != identity:
            raise self._mismatch(active.identity, identity)
        self._identity = identity

    def _mismatch(self, recorded: EmbedderIdentity, configured: EmbedderIdentity, *,
                  since_open: bool = False) -> EmbedderMismatchError:
        if since_open:
            return reindexed_since_open(f"the memory store {self.path}", recorded, configured)
        return EmbedderMismatchError(
            f"the memory store {self.path} holds vectors made by {recorded.describe()}, but the embedder "
            f"now configured is {configured.describe()}",
            hint="run `mindgate reindex` to re-embed every memory with the new embedder, "
                 "or configure the old embedder again")

    def _writable_space(self, conn: apsw.Connection) -> Space:
        if self._identity is None:
            raise StoreError(f"the memory store {self.path} was not opened",
                             hint="call store.open(embedder_identity) before writing")
        active = find_space(conn, "active")
        if active is None:  # reset() dropped it: start again with this store's embedder
            return create_space(conn, self._identity, "active")
        if active.identity != self._identity:
            raise self._mismatch(active.identity, self._identity, since_open=True)
        return active

    # -- writes ----------------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> builtins.list[ChangeResult]:
        prepared = [self._prepare(change) for change in changes]
        if not prepared:
            return []
        with self._db.write() as conn:
            active = self._writable_space(conn)
            txn = _Txn(conn, iso(utcnow()), active, find_space(conn, "staging"))
            results = [self._apply_one(txn, change, blob) for change, blob in prepared]
            after = {partition: state[1] for partition, delta in txn.deltas.items()
                     if delta is not None and (state := partition_state(conn, partition)) is not None}
        self._slots.update(txn.new_slots)  # committed now; a rolled-back slot must never be cached
        touched = set(txn.deltas) | {(c.record.scope if isinstance(c, AddChange) else c.scope).partition
                                     for c, _ in prepared}
        patched = set()
        for partition, delta in txn.deltas.items():
            if delta is not None and partition in after:
                self._vectors.patch(active.table, partition, delta.before, after[partition], delta.removed,
                                    delta.added)
                patched.add(partition)
        self._written(touched - patched)
        self._counts.drop(patched)  # a patched vector copy stays; the text counts are read again
        return results

    def _delta(self, txn: _Txn, partition: str) -> _Delta | None:
        """The transaction's vector delta of ``partition``, begun before its first change there."""
        if partition not in txn.deltas:
            state = partition_state(txn.conn, partition) if self._vectors.holds(partition) else None
            txn.deltas[partition] = None if state is None else _Delta(state[1])
        return txn.deltas[partition]

    def _written(self, partitions: set[str]) -> None:
        """Drop what is cached of partitions this store just wrote (their versions moved on in the file, so
        it is stale anyway; dropping it now releases the memory)."""
        self._vectors.drop(partitions)
        self._counts.drop(partitions)

    def _prepare(self, change: Change) -> tuple[Change, bytes | None]:
        if isinstance(change, AddChange):
            rec = change.record
            if not isinstance(rec.scope, Scope):
                raise InvalidRequestError(f"record {rec.id!r} has no Scope")
            if not isinstance(rec.id, str) or not rec.id or not isinstance(rec.memory, str):
                raise InvalidRequestError(f"a memory needs a non-empty string id and string text, got {rec.id!r}")
            metadata_json(rec.metadata)
            return change, self._blob(change.vector)
        if isinstance(change, UpdateChange):
            if not isinstance(change.memory, str):
                raise InvalidRequestError(f"the new text of memory {change.id!r} is not a string")
            metadata_json(change.metadata)
            return change, self._blob(change.vector)
        if isinstance(change, DeleteChange):
            return change, None
        raise InvalidRequestError(f"unknown change {type(change).__name__}",
                                  hint="pass AddChange, UpdateChange or DeleteChange objects")

    def _blob(self, vector: Vector) -> bytes:
        identity = self._identity
        if identity is None:
            raise StoreError(f"the memory store {self.path} was not opened",
                             hint="call store.open(embedder_identity) before writing")
        return vector_blob(vector, identity.dims)

    def _apply_one(self, txn: _Txn, change: Change, blob: bytes | None) -> ChangeResult:
        conn, now, active, staging = txn.conn, txn.now, txn.active, txn.staging
        if isinstance(change, AddChange):
            assert blob is not None
            return self._add(txn, change, blob)
        assert isinstance(change, UpdateChange | DeleteChange)
        where, params = scope_sql(change.scope)
        row = one_row(conn, f"SELECT m.rowid, m.memory, m.partition, m.scope_key FROM memories m "
                           f"WHERE m.id = ? AND {where}", [change.id, *params])
        if row is None:
            raise NotFoundError(f"memory {change.id!r} not found in scope {change.scope.as_dict()}",
                                hint="check the id and pass the scope it was stored under; nothing was changed")
        rowid, old, partition, scope_key = row
        delta = self._delta(txn, partition)
        if delta is not None:
            delta.remove(rowid)
        if isinstance(change, UpdateChange):
            new_hash = content_hash(change.memory)
            clash = one_row(conn, "SELECT 1 FROM memories WHERE scope_key = ? AND hash = ? AND "
                                 "deleted_at IS NULL AND rowid != ?", (scope_key, new_hash, rowid))
            if clash is None:
                assert blob is not None
                meta = None if change.metadata is None else metadata_json(change.metadata)
                conn.execute("UPDATE memories SET memory = ?, hash = ?, metadata = coalesce(?, metadata), "
                             "updated_at = ?, vec_gen = ? WHERE rowid = ?",
                             (change.memory, new_hash, meta, now, active.gen, rowid))
                drop_vectors(conn, rowid, active, staging)
                conn.execute(f"INSERT INTO {active.table} (rowid, part, embedding) VALUES (?, ?, ?)",
                             (rowid, partition, blob))
                if delta is not None:
                    delta.add(rowid, blob)
                conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (rowid,))
                conn.execute("INSERT INTO memories_fts (rowid, memory) VALUES (?, ?)", (rowid, change.memory))
                conn.execute(_HISTORY_INSERT, (new_id(), change.id, "UPDATE", old, change.memory, now,
                                               change.actor))
                return ChangeResult(change.id, change.memory, "UPDATE", previous_memory=old)
        conn.execute("UPDATE memories SET deleted_at = ? WHERE rowid = ?", (now, rowid))
        drop_vectors(conn, rowid, active, staging)
        conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (rowid,))
        conn.execute(_HISTORY_INSERT, (new_id(), change.id, "DELETE", old, None, now, change.actor))
        return ChangeResult(change.id, old, "DELETE")

    def _add(self, txn: _Txn, change: AddChange, blob: bytes) -> ChangeResult:
        conn, now, active = txn.conn, txn.now, txn.active
        rec = change.record
        scope = rec.scope
        lo, hi = slot_range(self._write_slot(txn, scope.partition))
        delta = self._delta(txn, scope.partition)
        try:
            inserted = one_row(
                conn, "INSERT INTO memories (rowid, id, partition, scope_key, user_id, agent_id, run_id, "
                      "memory, hash, metadata, created_at, updated_at, vec_gen, key_context) "
                      "SELECT coalesce(max(rowid) + 1, ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                      "FROM memories WHERE rowid BETWEEN ? AND ? "
                      "ON CONFLICT (scope_key, hash) WHERE deleted_at IS NULL DO NOTHING RETURNING rowid",
                (lo, rec.id, scope.partition, scope.key, scope.user_id, scope.agent_id, scope.run_id,
                 rec.memory, rec.hash, metadata_json(rec.metadata), iso(rec.created_at),
                 iso(rec.updated_at) if rec.updated_at else None, active.gen, rec.key_context, lo, hi))
        except apsw.ConstraintError as exc:
            raise InvalidRequestError(f"a memory with id {rec.id!r} already exists",
                                      hint="give each new memory a fresh id; nothing was stored") from exc
        if inserted is None:
            existing = one_row(conn, "SELECT id, memory FROM memories WHERE scope_key = ? AND hash = ? "
                                    "AND deleted_at IS NULL", (scope.key, rec.hash))
            return ChangeResult(existing[0], existing[1], "NONE")
        rowid = inserted[0]
        conn.execute(f"INSERT INTO {active.table} (rowid, part, embedding) VALUES (?, ?, ?)",
                     (rowid, scope.partition, blob))
        if delta is not None:
            delta.add(rowid, blob)
        conn.execute("INSERT INTO memories_fts (rowid, memory) VALUES (?, ?)", (rowid, rec.memory))
        conn.execute(_HISTORY_INSERT, (new_id(), rec.id, "ADD", None, rec.memory, now, change.actor))
        return ChangeResult(rec.id, rec.memory, "ADD")

    def _slot(self, conn: apsw.Connection, partition: str) -> int | None:
        """The partition's committed rowid slot, or None; slots are permanent, so they are cached."""
        slot = self._slots.get(partition)
        if slot is None:
            row = one_row(conn, "SELECT slot FROM partitions WHERE partition = ?", (partition,))
            if row is None:
                return None
            slot = self._slots[partition] = int(row[0])
        return slot

    def _write_slot(self, txn: _Txn, partition: str) -> int:
        """The partition's slot, created in this transaction when new (cached only after the commit)."""
        slot = txn.new_slots.get(partition) or self._slot(txn.conn, partition)
        if slot is None:
            slot = int(one_row(txn.conn, "INSERT INTO partitions (partition) VALUES (?) RETURNING slot",
                            (partition,))[0])
            txn.new_slots[partition] = slot
        return slot

    def delete_scope(self, scope: Scope, actor: str | None = None) -> int:
        where, params = scope_sql(scope)
        now = iso(utcnow())
        with self._db.write() as conn:
            rows = all_rows(conn, f"SELECT m.rowid, m.id, m.memory FROM memories m WHERE {where}",
                                params)
            conn.execute("DELETE FROM context_summaries WHERE partition = ?", (scope.partition,))
            if not rows:
                return 0
            active, staging = find_space(conn, "active"), find_space(conn, "staging")
            for table in [s.table for s in (active, staging) if s is not None]:
                conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(r[0],) for r in rows])
            conn.executemany("DELETE FROM memories_fts WHERE rowid = ?", [(r[0],) for r in rows])
            conn.executemany("UPDATE memories SET deleted_at = ? WHERE rowid = ?", [(now, r[0]) for r in rows])
            conn.executemany(_HISTORY_INSERT, [(new_id(), r[1], "DELETE", r[2], None, now, actor) for r in rows])
        self._written({scope.partition})
        return len(rows)

    def reset(self) -> None:
        with self._db.write() as conn:
            for gen, in all_rows(conn, "SELECT gen FROM vector_spaces"):
                conn.execute(f"DROP TABLE IF EXISTS memories_vec_{int(gen)}")
            with all_versions_moved(conn):
                conn.execute("DELETE FROM vector_spaces; DELETE FROM memories; DELETE FROM history; "
                             "DELETE FROM context_summaries; "
                             "INSERT INTO memories_fts (memories_fts) VALUES ('delete-all')")
        self._vectors.clear()
        self._counts.clear()

    # -- reads -----------------------------------------------------------------------------------

    def get(self, memory_id: str, scope: Scope | None = None, *,
            include_deleted: bool = False) -> MemoryRecord | None:
        if scope is not None:
            where, params = scope_sql(scope, include_deleted=include_deleted)
        else:
            where, params = ("1" if include_deleted else "m.deleted_at IS NULL"), []
        with self._db.read() as conn:
            row = one_row(conn, f"SELECT {RECORD_COLUMNS} FROM memories m WHERE m.id = ? AND {where}",
                               [memory_id, *params])
        return to_record(row) if row else None

    def list(self, scope: Scope, flt: Filter | None = None, *, limit: int = 100,
             offset: int = 0) -> builtins.list[MemoryRecord]:
        check_count("limit", limit)
        check_count("offset", offset)
        where, params = where_sql(scope, flt)
        with self._db.read() as conn:
            rows = all_rows(conn, f"SELECT {RECORD_COLUMNS} FROM memories m WHERE {where} "
                                "ORDER BY m.created_at DESC, m.id LIMIT ? OFFSET ?",
                                [*params, limit, offset])
        return [to_record(r) for r in rows]

    def count(self, scope: Scope, flt: Filter | None = None) -> int:
        where, params = where_sql(scope, flt)
        with self._db.read() as conn:
            return int(one_row(conn, f"SELECT count(*) FROM memories m WHERE {where}", params)[0])

    def scopes(self, *, limit: int = 1000) -> builtins.list[tuple[str, str, int]]:
        check_count("limit", limit)
        with self._db.read() as conn:
            rows = all_rows(conn, SCOPES_SQL, [limit])
        return [(str(kind), str(scope_id), int(n)) for kind, scope_id, n in rows]

    def vector_search(self, scope: Scope, vector: Vector, k: int,
                      flt: Filter | None = None) -> builtins.list[tuple[MemoryRecord, float]]:
        return self._vector(RECORDS, scope, vector, k, flt)

    def vector_candidates(self, scope: Scope, vector: Vector, k: int,
                          flt: Filter | None = None) -> builtins.list[tuple[Candidate, float]]:
        return self._vector(CANDIDATES, scope, vector, k, flt)

    def text_search(self, scope: Scope, query: str, k: int,
                    flt: Filter | None = None) -> builtins.list[tuple[MemoryRecord, float]]:
        return self._text(RECORDS, scope, query, k, flt)

    def text_candidates(self, scope: Scope, query: str, k: int,
                        flt: Filter | None = None) -> builtins.list[tuple[Candidate, float]]:
        return self._text(CANDIDATES, scope, query, k, flt)

    def records(self, candidates: Sequence[Candidate]) -> dict[str, MemoryRecord]:
        if not candidates:
            return {}
        with self._db.read() as conn:
            by_rowid = by_rowids(conn, RECORDS, [c.ref for c in candidates])
        # a rowid names the same record until reset() empties the store: the id check covers that
        return {c.id: r for c in candidates if (r := by_rowid.get(c.ref)) is not None and r.id == c.id}

    def _vector(self, read: RowReader[T], scope: Scope, vector: Vector, k: int,
                flt: Filter | None) -> builtins.list[tuple[T, float]]:
        """The k nearest live records as ``read`` makes them (records or candidates), with their similarity."""
        check_count("k", k)
        if k == 0:
            return []
        with self._db.read() as conn:
            active = find_space(conn, "active")
            if active is None:
                return []
            if self._identity is not None and active.identity != self._identity:
                raise self._mismatch(active.identity, self._identity, since_open=True)
            blob = vector_blob(vector, active.identity.dims, what="query vector")
            if flt is None and len(scope.as_dict()) == 1:
                state = partition_state(conn, scope.partition)
                if state is None:
                    return []  # nothing was ever stored in the partition
                found = self._vectors.search(conn, active.table, active.identity.dims, scope.partition,
                                             np.frombuffer(blob, dtype=np.float32), min(k, MAX_K), state[1])
                if found is not None:
                    known = by_rowids(conn, read, [rowid for rowid, _ in found])
                    return [(known[rowid], similarity(d)) for rowid, d in found if rowid in known]
            # each nearest vector's columns read in the same statement (vec0 stays the outer loop, so the
            # rows keep its nearest-first order)
            sql = (f"SELECT {read.columns}, v.distance FROM {active.table} v JOIN memories m ON m.rowid = v.rowid "
                   "WHERE v.embedding MATCH ? AND k = ? AND v.part = ? AND m.deleted_at IS NULL")
            params: list[Any] = [blob, min(k, MAX_K), scope.partition]
            if flt is not None or len(scope.as_dict()) > 1:
                slot = self._slot(conn, scope.partition)
                if slot is None:
                    return []
                # the partition's rows are contiguous: read them by rowid range, not through the
                # partition index and one table lookup per row
                where, extra = where_sql(scope, flt, partition_index=False)
                sql += f" AND v.rowid IN (SELECT m.rowid FROM memories m WHERE m.rowid BETWEEN ? AND ? AND {where})"
                params += [*slot_range(slot), *extra]
            rows = all_rows(conn, sql, params)
        return [(read.make(row), similarity(row[-1])) for row in rows]

    def _text(self, read: RowReader[T], scope: Scope, query: str, k: int,
              flt: Filter | None) -> builtins.list[tuple[T, float]]:
        """The k most relevant live records as ``read`` makes them, with their text relevance."""
        check_count("k", k)
        if not isinstance(query, str):
            raise InvalidRequestError(f"a text query must be a string, got {type(query).__name__}")
        if k == 0:
            return []
        with self._db.read() as conn:
            tokens = query_tokens(conn, query)
            state = partition_state(conn, scope.partition) if tokens else None
            if state is None:
                return []
            slot, version = state
            counts = self._counts.at(scope.partition, version)
            tokens = prune(conn, content_words(tokens), *slot_range(slot), cache=counts)
            if not tokens:
                return []
            documents = counts.get(("n", scope.partition))
            if documents is None:
                # the partition's live records: each has one FTS row, and FTS5's docsize table holds one small
                # row per document (the partition index would read each record's table row: 5x slower)
                documents = int(one_row(conn, "SELECT count(*) FROM memories_fts_docsize WHERE id BETWEEN ? AND ?",
                                     slot_range(slot))[0])
                counts.put(("n", scope.partition), documents)
            ranked = bm25_ranked(conn, tokens, *slot_range(slot), documents, counts)
            if not ranked:
                return []
            if flt is not None or len(scope.as_dict()) > 1:
                where, params = where_sql(scope, flt)
                allowed = {r[0] for r in all_rows(conn, f"SELECT m.rowid FROM memories m WHERE {where} AND m.rowid "
                                                    "IN (SELECT value FROM json_each(?))",
                                              [*params, json.dumps([r for r, _ in ranked])])}
                ranked = [item for item in ranked if item[0] in allowed]
            ranked = ranked[:k]
            known = by_rowids(conn, read, [r for r, _ in ranked])
        return [(known[r], score) for r, score in ranked if r in known]

    def history(self, memory_id: str) -> builtins.list[HistoryRecord]:
        with self._db.read() as conn:
            rows = all_rows(conn, "SELECT id, memory_id, event, old_memory, new_memory, created_at, actor "
                                "FROM history WHERE memory_id = ? ORDER BY created_at, seq", (memory_id,))
        return [to_history(r) for r in rows]

    def iter_records(self, *, include_deleted: bool = False,
                     batch_size: int = 1000) -> Iterator[MemoryRecord]:
        live = "" if include_deleted else "AND m.deleted_at IS NULL"
        sql = f"SELECT {RECORD_COLUMNS} FROM memories m WHERE m.id > ? {live} ORDER BY m.id LIMIT ?"
        return (to_record(r) for r in keyset_pages(self._reader(sql), batch_size, key=1))

    def iter_history(self, *, batch_size: int = 1000) -> Iterator[HistoryRecord]:
        sql = ("SELECT id, memory_id, event, old_memory, new_memory, created_at, actor FROM history WHERE id > ? "
               "ORDER BY id LIMIT ?")
        return (to_history(r) for r in keyset_pages(self._reader(sql), batch_size))

    def _reader(self, sql: str) -> Callable[[str, int], Any]:
        """``fetch(after, limit)`` for :func:`keyset_pages`: one short read of ``sql`` per page."""
        def fetch(after: str, limit: int) -> Any:
            with self._db.read() as conn:
                return all_rows(conn, sql, (after, limit))
        return fetch

    def recorded_identity(self) -> EmbedderIdentity | None:
        with self._db.read() as conn:
            active = find_space(conn, "active")
        return active.identity if active else None

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[str, Vector]]:
        """Live records' vectors of the active space (deleted records keep none), in id order."""
        check_count("batch_size", batch_size, minimum=1)
        with self._db.read() as conn:
            active = find_space(conn, "active")
        if active is None:
            return iter(())
        sql = (f"SELECT m.id, v.embedding FROM memories m JOIN {active.table} v ON v.rowid = m.rowid "
               "WHERE m.id > ? ORDER BY m.id LIMIT ?")
        return ((memory_id, np.frombuffer(blob, dtype=np.float32).copy())
                for memory_id, blob in keyset_pages(self._reader(sql), batch_size))

    # -- migration target ------------------------------------------------------------------------

    def import_records(self, items: Sequence[tuple[MemoryRecord, Vector | None, bool]]) -> None:
        prepared = [(rec, None if vector is None or deleted else self._blob(vector), deleted)
                    for rec, vector, deleted in items]
        with self._db.write() as conn:
            active = self._writable_space(conn)
            txn = _Txn(conn, iso(utcnow()), active, find_space(conn, "staging"))
            tables = [s.table for s in (active, txn.staging) if s is not None]
            for item in prepared:
                import_record(conn, item, now=txn.now, tables=tables, active_table=active.table,
                              active_gen=active.gen, slot_of=lambda partition: self._write_slot(txn, partition))
        self._slots.update(txn.new_slots)
        self._written({rec.scope.partition for rec, _, _ in prepared})

    def import_history(self, items: Sequence[HistoryRecord]) -> None:
        with self._db.write() as conn:
            import_history(conn, items)

    def vector_cache(self) -> dict[str, float]:
        """The in-memory vector copies: ``budget`` (``vector_cache_mb``) and ``held``, in MiB."""
        return {"budget": self._vectors.max_bytes / 2**20, "held": self._vectors.bytes_used / 2**20}

    def close(self) -> None:
        self._vectors.clear()
        self._db.close()

