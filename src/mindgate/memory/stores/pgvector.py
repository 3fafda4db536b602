"""The scale-out memory store: PostgreSQL with pgvector (vectors, HNSW) and ``tsvector`` full-text.

Same contract as the SQLite store (see :mod:`mindgate.memory.stores.base`); the schema is described in
:mod:`mindgate.memory.stores.pg_schema`. Connections come from a psycopg 3 pool; every public method
runs in one transaction on one pooled connection, so the store is thread-safe. The first call connects,
creates the pgvector extension if it can, and applies pending schema migrations.

Vector search asks the HNSW index first (approximate, fast on large partitions) and falls back to an
exact scan of the partition when the index returns fewer than ``k`` rows (a small partition or a
selective filter, where post-filtering an approximate scan loses results).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from mindgate.config import PgVectorStoreConfig
from mindgate.errors import ConfigurationError, EmbedderMismatchError, InvalidRequestError, NotFoundError, StoreError
from mindgate.memory.filters import Filter
from mindgate.memory.stores import pg_schema as schema
from mindgate.memory.stores.base import (
    AddChange,
    Change,
    ChangeResult,
    DeleteChange,
    HistoryRecord,
    MemoryRecord,
    MemoryStore,
    Scope,
    UpdateChange,
    content_hash,
    utcnow,
)
from mindgate.memory.stores.pg_connect import (
    build_conninfo,
    connect_once,
    db_errors,
    ensure_vector_extension,
    make_pool,
)
from mindgate.memory.stores.pg_sql import filter_sql, metadata_jsonb, scope_sql, text_query
from mindgate.providers.base import EmbedderIdentity, Vector

Records = list[MemoryRecord]  # aliases: inside the class, `list` is the list() method
Scored = list[tuple[MemoryRecord, float]]
Histories = list[HistoryRecord]
COLUMNS = sql.SQL("m.id, m.memory, m.hash, m.user_id, m.agent_id, m.run_id, m.metadata, m.created_at, m.updated_at")
# Writes insert their history row in the same statement, from a data-modifying CTE: "{hist} SELECT ...".
_HIST = "INSERT INTO {} (partition, id, memory_id, event, old_memory, new_memory, created_at, actor)"
_REINDEX_HINT = "run `mindgate reindex` to re-embed the memories with the configured embedder, " \
                "or configure the embedder the store was built with"


class PgVectorStore(MemoryStore):
    """Memories in PostgreSQL + pgvector; tables are named ``<collection_name>_*``."""

    def __init__(self, config: PgVectorStoreConfig) -> None:
        self.config = config
        self._conninfo = build_conninfo(config)
        self._tables = schema.Tables(config.collection_name)
        self._names: dict[str, sql.Composable] = {
            **self._tables.names(), "hist": sql.SQL(_HIST).format(self._tables.history)}
        self._pool: ConnectionPool | None = None
        self._connect_lock = threading.Lock()
        self._identity: EmbedderIdentity | None = None
        self._recorded = False  # whether self._identity is known to be the recorded one (reset clears it)

    @property
    def collection(self) -> str:
        return self._tables.prefix

    # -- connection ----------------------------------------------------------------------------------

    def _ready(self) -> ConnectionPool:
        """The pool; the first call checks the server and migrates the schema."""
        with self._connect_lock:
            if self._pool is None:
                with connect_once(self._conninfo) as conn, db_errors(self._conninfo, self.config.maxconn):
                    conn.autocommit = True
                    ensure_vector_extension(conn, hnsw=self.config.hnsw)
                    schema.migrate(conn, self._tables)
                self._pool = make_pool(self._conninfo, self.config, name=f"mindgate-{self.collection}")
            return self._pool

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in one transaction: committed when the block ends, rolled back when it raises."""
        pool = self._ready()
        with db_errors(self._conninfo, self.config.maxconn), pool.connection() as conn, conn.cursor() as cur:
            yield cur

    def _q(self, template: str, *parts: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(*parts, **self._names)

    def close(self) -> None:
        with self._connect_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- identity ------------------------------------------------------------------------------------

    def open(self, identity: EmbedderIdentity) -> None:
        dims = self.config.embedding_model_dims
        if dims is not None and dims != identity.dims:
            raise ConfigurationError(f"vector_store.config.embedding_model_dims is {dims} but the embedder "
                                     f"{identity.describe()} makes {identity.dims}-dim vectors",
                                     hint="remove embedding_model_dims or make it match the embedder")
        with self._tx() as cur:
            conn = cur.connection
            schema.lock(conn, self._tables)
            current = schema.read_identity(conn, self._tables)
            if current is None:
                schema.install_identity(conn, self._tables, identity, hnsw=self.config.hnsw)
            elif current != identity:
                staging = schema.read_identity(conn, self._tables, "next")
                extra = " (a reindex to it is in progress)" if staging == identity else ""
                raise EmbedderMismatchError(
                    f"the {self.collection!r} collection holds vectors made by {current.describe()}, but the "
                    f"configured embedder is {identity.describe()}{extra}", hint=_REINDEX_HINT)
            elif self.config.hnsw:
                schema.create_hnsw(conn, self._tables)
        self._identity, self._recorded = identity, True

    def recorded_identity(self) -> EmbedderIdentity | None:
        with self._tx() as cur:
            return schema.read_identity(cur.connection, self._tables)

    def _check_vector(self, vector: Vector, dims: int | None, what: str) -> np.ndarray[Any, Any]:
        arr = np.asarray(vector, dtype=np.float32)
        if arr.ndim != 1 or (dims is not None and arr.shape[0] != dims):
            raise InvalidRequestError(f"{what} has shape {arr.shape}, but the store holds {dims}-dim vectors",
                                      hint="embed with the embedder the store was opened with")
        if not np.isfinite(arr).all():
            raise InvalidRequestError(f"{what} contains NaN or infinite values")
        return arr

    def _require_open(self) -> EmbedderIdentity:
        if self._identity is None:
            raise StoreError("the pgvector store is not open", hint="call open(embedder_identity) first")
        return self._identity

    # -- writes --------------------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> list[ChangeResult]:
        if not changes:
            return []
        identity = self._require_open()
        vectors = [None if isinstance(c, DeleteChange) else
                   self._check_vector(c.vector, identity.dims, f"the vector of memory {_id_of(c)!r}") for c in changes]
        for change in changes:
            _check_text(change)
        now = utcnow()
        with self._tx() as cur:
            if not self._recorded:  # reset() dropped the identity: record it again before writing
                schema.lock(cur.connection, self._tables)
                if schema.read_identity(cur.connection, self._tables) is None:
                    schema.install_identity(cur.connection, self._tables, identity, hnsw=self.config.hnsw)
            results = [self._apply_one(cur, change, vector, now)
                       for change, vector in zip(changes, vectors, strict=True)]
        self._recorded = True
        return results

    def _apply_one(self, cur: psycopg.Cursor[Any], change: Change, vector: np.ndarray[Any, Any] | None,
                   now: datetime) -> ChangeResult:
        if isinstance(change, AddChange):
            return self._add(cur, change, vector, now)
        where, params = scope_sql(change.scope)
        if isinstance(change, UpdateChange):
            cur.execute(self._q(
                "WITH old AS (SELECT m.partition, m.id, m.memory FROM {memories} m WHERE m.id = %s AND {} FOR UPDATE), "
                "upd AS (UPDATE {memories} t SET memory = %s, hash = %s, embedding = %s, embedding_next = NULL, "
                "metadata = coalesce(%s, t.metadata), updated_at = %s FROM old "
                "WHERE t.partition = old.partition AND t.id = old.id RETURNING t.partition, t.id, old.memory AS prev) "
                "{hist} SELECT partition, gen_random_uuid()::text, id, 'UPDATE', prev, %s, %s, %s FROM upd "
                "RETURNING old_memory",
                where),
                [change.id, *params, change.memory, content_hash(change.memory), vector,
                 None if change.metadata is None else metadata_jsonb(change.metadata), now,
                 change.memory, now, change.actor])
            row = cur.fetchone()
            if row is None:
                raise _not_found(change.id, change.scope)
            return ChangeResult(change.id, change.memory, "UPDATE", previous_memory=row[0])
        cur.execute(self._q(
            "WITH del AS (UPDATE {memories} m SET deleted_at = %s WHERE m.id = %s AND {} "
            "RETURNING m.partition, m.id, m.memory) "
            "{hist} SELECT partition, gen_random_uuid()::text, id, 'DELETE', memory, NULL, %s, %s FROM del "
            "RETURNING old_memory",
            where), [now, change.id, *params, now, change.actor])
        row = cur.fetchone()
        if row is None:
            raise _not_found(change.id, change.scope)
        return ChangeResult(change.id, row[0], "DELETE")

    def _add(self, cur: psycopg.Cursor[Any], change: AddChange, vector: Any, now: datetime) -> ChangeResult:
        rec, scope = change.record, change.record.scope
        cur.execute(self._q(
            "WITH ins AS (INSERT INTO {memories} (partition, id, scope_key, user_id, agent_id, run_id, memory, hash, "
            "metadata, created_at, updated_at, embedding) "
            "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s WHERE NOT EXISTS "
            "(SELECT 1 FROM {memories} WHERE id = %s) "
            "ON CONFLICT (partition, scope_key, hash) WHERE deleted_at IS NULL DO NOTHING "
            "RETURNING partition, id, memory) "
            "{hist} SELECT partition, gen_random_uuid()::text, id, 'ADD', NULL, memory, %s, %s FROM ins "
            "RETURNING memory_id"),
            [scope.partition, rec.id, scope.key, scope.user_id, scope.agent_id, scope.run_id, rec.memory, rec.hash,
             metadata_jsonb(rec.metadata), _utc(rec.created_at), _utc(rec.updated_at), vector, rec.id,
             now, change.actor])
        if cur.fetchone() is not None:
            return ChangeResult(rec.id, rec.memory, "ADD")
        cur.execute(self._q("SELECT id, memory FROM {memories} WHERE partition = %s AND scope_key = %s AND hash = %s "
                            "AND deleted_at IS NULL"), [scope.partition, scope.key, rec.hash])
        existing = cur.fetchone()
        if existing is None:
            raise StoreError(f"memory id {rec.id!r} already exists", hint="give every new memory a fresh id")
        return ChangeResult(existing[0], existing[1], "NONE")

    def delete_scope(self, scope: Scope, actor: str | None = None) -> int:
        where, params = scope_sql(scope)
        now = utcnow()
        with self._tx() as cur:
            cur.execute(self._q(
                "WITH del AS (UPDATE {memories} m SET deleted_at = %s WHERE {} RETURNING m.partition, m.id, m.memory) "
                "{hist} SELECT partition, gen_random_uuid()::text, id, 'DELETE', memory, NULL, %s, %s FROM del", where),
                [now, *params, now, actor])
            return max(cur.rowcount, 0)

    def reset(self) -> None:
        with self._tx() as cur:
            schema.lock(cur.connection, self._tables)
            cur.execute(self._q("TRUNCATE {history}, {memories}"))
            cur.execute(self._q("DELETE FROM {embedder}"))
            cur.execute(self._q("DROP INDEX IF EXISTS {pending}"))
        self._recorded = False

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, memory_id: str, scope: Scope | None = None, *,
            include_deleted: bool = False) -> MemoryRecord | None:
        if scope is not None:
            where, params = scope_sql(scope, live=not include_deleted)
        else:
            where, params = sql.SQL("true" if include_deleted else "m.deleted_at IS NULL"), []
        with self._tx() as cur:
            cur.execute(self._q("SELECT {} FROM {memories} m WHERE m.id = %s AND {} LIMIT 1", COLUMNS, where),
                        [memory_id, *params])
            row = cur.fetchone()
        return _record(row) if row else None

    def _where(self, scope: Scope, flt: Filter | None) -> tuple[sql.Composable, list[Any]]:
        where, params = scope_sql(scope)
        if flt is None:
            return where, params
        fsql, fparams = filter_sql(flt)
        return sql.SQL("{} AND {}").format(where, fsql), [*params, *fparams]

    def list(self, scope: Scope, flt: Filter | None = None, *, limit: int = 100,
             offset: int = 0) -> Records:
        if limit < 0 or offset < 0:
            raise InvalidRequestError(f"limit and offset must not be negative (got {limit}, {offset})")
        where, params = self._where(scope, flt)
        with self._tx() as cur:
            cur.execute(self._q("SELECT {} FROM {memories} m WHERE {} ORDER BY m.created_at DESC, m.id "
                                "LIMIT %s OFFSET %s", COLUMNS, where), [*params, limit, offset])
            return [_record(r) for r in cur.fetchall()]

    def count(self, scope: Scope, flt: Filter | None = None) -> int:
        where, params = self._where(scope, flt)
        with self._tx() as cur:
            cur.execute(self._q("SELECT count(*) FROM {memories} m WHERE {}", where), params)
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def vector_search(self, scope: Scope, vector: Vector, k: int,
                      flt: Filter | None = None) -> Scored:
        if k <= 0:
            return []
        identity = self._require_open()
        query = self._check_vector(vector, identity.dims, "the query vector")
        where, params = self._where(scope, flt)
        with self._tx() as cur:
            rows: list[Any] = []
            if self.config.hnsw:
                cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(min(1000, max(40, 2 * k)))])
                cur.execute(self._q("SELECT {}, m.embedding <=> %s FROM {memories} m WHERE {} "
                                    "AND m.embedding IS NOT NULL ORDER BY m.embedding <=> %s LIMIT %s",
                                    COLUMNS, where), [query, *params, query, k])
                rows = cur.fetchall()
            if len(rows) < k:  # exact: "+ 0" keeps the planner off the index, which cannot post-filter
                cur.execute(self._q("SELECT {}, m.embedding <=> %s AS d FROM {memories} m WHERE {} "
                                    "AND m.embedding IS NOT NULL ORDER BY (m.embedding <=> %s) + 0, m.id LIMIT %s",
                                    COLUMNS, where), [query, *params, query, k])
                rows = cur.fetchall()
        return [(_record(r), _similarity(r[-1])) for r in rows]

    def text_search(self, scope: Scope, query: str, k: int,
                    flt: Filter | None = None) -> Scored:
        tsq = text_query(query)
        if k <= 0 or tsq is None:
            return []
        qsql, qparams = tsq
        where, params = self._where(scope, flt)
        with self._tx() as cur:
            cur.execute(self._q("SELECT {}, ts_rank_cd(m.tsv, q.q, 1) AS rank FROM {memories} m, (SELECT {} AS q) q "
                                "WHERE m.tsv @@ q.q AND {} ORDER BY rank DESC, m.id LIMIT %s",
                                COLUMNS, qsql, where), [*qparams, *params, k])
            return [(_record(r), float(r[-1])) for r in cur.fetchall()]

    def history(self, memory_id: str) -> Histories:
        with self._tx() as cur:
            cur.execute(self._q("SELECT id, memory_id, event, old_memory, new_memory, created_at, actor "
                                "FROM {history} WHERE memory_id = %s ORDER BY created_at, seq"), [memory_id])
            return [_history(r) for r in cur.fetchall()]

    # -- bulk iteration (reindex, migration) ---------------------------------------------------------

    def _pages(self, template: str, batch_size: int, *parts: sql.Composable) -> Iterator[Any]:
        """Rows of ``template`` (which has ``id > %s ... ORDER BY id LIMIT %s``) page by page, each page
        in its own short transaction; the id is the first column."""
        if batch_size <= 0:
            raise InvalidRequestError(f"batch_size must be positive, got {batch_size}")
        after = ""
        while True:
            with self._tx() as cur:
                cur.execute(self._q(template, *parts), [after, batch_size])
                rows = cur.fetchall()
            yield from rows
            if len(rows) < batch_size:
                return
            after = rows[-1][0]

    def iter_records(self, *, include_deleted: bool = False,
                     batch_size: int = 1000) -> Iterator[MemoryRecord]:
        live = sql.SQL("" if include_deleted else "AND m.deleted_at IS NULL")
        for row in self._pages("SELECT {} FROM {memories} m WHERE m.id > %s {} ORDER BY m.id LIMIT %s",
                               batch_size, COLUMNS, live):
            yield _record(row)

    def iter_history(self, *, batch_size: int = 1000) -> Iterator[HistoryRecord]:
        for row in self._pages("SELECT id, memory_id, event, old_memory, new_memory, created_at, actor "
                               "FROM {history} WHERE id > %s ORDER BY id LIMIT %s", batch_size):
            yield _history(row)

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[str, Vector]]:
        for row in self._pages("SELECT m.id, m.embedding FROM {memories} m WHERE m.id > %s "
                               "AND m.embedding IS NOT NULL ORDER BY m.id LIMIT %s", batch_size):
            yield row[0], _vector(row[1])

    # -- reindex -------------------------------------------------------------------------------------

    def reindex_pending(self, identity: EmbedderIdentity, *, limit: int) -> Records:
        with self._tx() as cur:
            conn = cur.connection
            if schema.read_identity(conn, self._tables) == identity:
                missing = sql.SQL("AND m.embedding IS NULL")
            elif schema.read_identity(conn, self._tables, "next") == identity:
                missing = sql.SQL("AND m.embedding_next IS NULL")
            else:
                missing = sql.SQL("")
            cur.execute(self._q("SELECT {} FROM {memories} m WHERE m.deleted_at IS NULL {} ORDER BY m.id LIMIT %s",
                                COLUMNS, missing), [max(limit, 0)])
            return [_record(r) for r in cur.fetchall()]

    def write_vectors(self, identity: EmbedderIdentity, items: Sequence[tuple[str, Vector]]) -> None:
        rows = [(self._check_vector(v, identity.dims, f"the vector of memory {i!r}"), i) for i, v in items]
        with self._tx() as cur:
            conn = cur.connection
            schema.lock(conn, self._tables)
            current = schema.read_identity(conn, self._tables)
            if current is None:
                schema.install_identity(conn, self._tables, identity, hnsw=self.config.hnsw)
                current = identity
            if current == identity:
                cur.executemany(self._q("UPDATE {memories} SET embedding = %s WHERE id = %s"), rows)
                return
            schema.begin_reindex(conn, self._tables, identity)
            cur.executemany(self._q("UPDATE {memories} SET embedding_next = %s WHERE id = %s "
                                    "AND deleted_at IS NULL"), rows)
            if self._pending_next(cur):
                return
            # Looks done: block writers (readers go on), check again, then swap the vectors in.
            cur.execute(self._q("LOCK TABLE {memories} IN EXCLUSIVE MODE"))
            if self._pending_next(cur):
                return
            schema.finish_reindex(conn, self._tables, identity, hnsw=self.config.hnsw)
        self._identity, self._recorded = identity, True

    def _pending_next(self, cur: psycopg.Cursor[Any]) -> bool:
        cur.execute(self._q("SELECT EXISTS (SELECT 1 FROM {memories} WHERE deleted_at IS NULL "
                            "AND embedding_next IS NULL)"))
        row = cur.fetchone()
        return bool(row and row[0])

    # -- migration target ----------------------------------------------------------------------------

    def import_records(self, items: Sequence[tuple[MemoryRecord, Vector | None, bool]]) -> None:
        identity = self._require_open()
        now = utcnow()
        rows = []
        for rec, vector, deleted in items:
            vec = None if vector is None else self._check_vector(vector, identity.dims, f"the vector of {rec.id!r}")
            s = rec.scope
            rows.append([s.partition, rec.id, s.key, s.user_id, s.agent_id, s.run_id, rec.memory, rec.hash,
                         metadata_jsonb(rec.metadata), _utc(rec.created_at), _utc(rec.updated_at),
                         now if deleted else None, vec])
        with self._tx() as cur:
            cur.executemany(self._q(
                "INSERT INTO {memories} AS t (partition, id, scope_key, user_id, agent_id, run_id, memory, hash, "
                "metadata, created_at, updated_at, deleted_at, embedding) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (partition, id) DO UPDATE SET scope_key = excluded.scope_key, "
                "user_id = excluded.user_id, agent_id = excluded.agent_id, run_id = excluded.run_id, "
                "memory = excluded.memory, hash = excluded.hash, metadata = excluded.metadata, "
                "created_at = excluded.created_at, updated_at = excluded.updated_at, "
                "deleted_at = CASE WHEN excluded.deleted_at IS NULL THEN NULL "
                "ELSE coalesce(t.deleted_at, excluded.deleted_at) END, "
                "embedding = excluded.embedding, embedding_next = NULL"), rows)

    def import_history(self, items: Sequence[HistoryRecord]) -> None:
        rows = [[h.id, h.memory_id, h.event, h.old_memory, h.new_memory, _utc(h.created_at), h.actor, h.memory_id]
                for h in items]
        with self._tx() as cur:
            cur.executemany(self._q(
                "{hist} SELECT m.partition, %s, %s, %s, %s, %s, %s, %s FROM {memories} m WHERE m.id = %s "
                "ON CONFLICT (partition, id) DO NOTHING"), rows)


def _id_of(change: Change) -> str:
    return change.record.id if isinstance(change, AddChange) else change.id


def _check_text(change: Change) -> None:
    text = change.record.memory if isinstance(change, AddChange) else getattr(change, "memory", "")
    if "\x00" in text or "\x00" in _id_of(change):
        raise InvalidRequestError(f"memory {_id_of(change)!r} contains a NUL character, which PostgreSQL "
                                  "cannot store", hint="remove \\x00 from the text")


def _not_found(memory_id: str, scope: Scope) -> NotFoundError:
    return NotFoundError(f"memory {memory_id!r} not found in scope {scope.as_dict()}",
                         hint="check the id and the user_id / agent_id / run_id it was stored under; "
                              "nothing was written")


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _record(row: Sequence[Any]) -> MemoryRecord:
    id_, memory, hash_, user_id, agent_id, run_id, metadata, created, updated = row[:9]
    return MemoryRecord(id=id_, memory=memory, hash=hash_,
                        scope=Scope(user_id=user_id, agent_id=agent_id, run_id=run_id),
                        metadata=metadata if isinstance(metadata, dict) else {},
                        created_at=created.astimezone(UTC),
                        updated_at=updated.astimezone(UTC) if updated else None)


def _history(row: Sequence[Any]) -> HistoryRecord:
    id_, memory_id, event, old, new, created, actor = row
    return HistoryRecord(id=id_, memory_id=memory_id, event=event, old_memory=old, new_memory=new,
                         created_at=created.astimezone(UTC), actor=actor)


def _vector(value: Any) -> Vector:
    arr = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(arr, dtype=np.float32)


def _similarity(distance: float | None) -> float:
    """pgvector's cosine distance as cosine similarity in [-1, 1]."""
    if distance is None or math.isnan(distance):
        return -1.0
    return max(-1.0, min(1.0, 1.0 - float(distance)))
