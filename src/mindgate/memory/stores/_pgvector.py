"""The scale-out memory store: PostgreSQL with pgvector (vectors, HNSW) and ``tsvector`` full-text.

Same contract as the SQLite store (see :mod:`mindgate.memory.stores._base`); the schema is described in
:mod:`mindgate.memory.stores._pg_schema`. Connections come from a psycopg 3 pool; every public method
runs in one transaction on one pooled connection, so the store is thread-safe. The first call connects,
creates the pgvector extension if it can, and applies pending schema migrations.

Vector search scans a small partition exactly; in a large one it asks the HNSW index first (approximate)
and falls back to an exact scan when the index returns fewer than ``k`` rows (a selective filter, where
post-filtering an approximate scan loses results).

Soft-deleted records keep their vectors (so a migration copies them). An UPDATE whose new text equals
another live fact in the same exact scope merges into it: the updated record is deleted, as in the
SQLite store. A reindex stages the new vectors in ``embedding_next`` and swaps them in when done.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from mindgate.config import PgVectorStoreConfig
from mindgate.errors import EmbedderMismatchError, InvalidRequestError, NotFoundError, StoreError
from mindgate.memory._filters import Filter
from mindgate.memory.stores import _pg_schema as schema
from mindgate.memory.stores._base import (
    AddChange,
    Change,
    ChangeResult,
    ContextSummary,
    DeleteChange,
    HistoryRecord,
    MemoryRecord,
    MemoryStore,
    Scope,
    UpdateChange,
    check_count,
    check_identity,
    check_vector,
    content_hash,
    keyset_pages,
    reindexed_since_open,
    utcnow,
)
from mindgate.memory.stores._pg_connect import (
    build_conninfo,
    connect_once,
    db_errors,
    ensure_vector_extension,
    make_pool,
)
from mindgate.memory.stores._pg_responses import PgResponses
from mindgate.memory.stores._pg_sql import (
    COLUMNS,
    HISTORY_COLUMNS,
    MAX_DIMS,
    SCOPES_SQL,
    check_change,
    check_record,
    filter_sql,
    metadata_jsonb,
    scope_sql,
    similarity,
    to_history,
    to_record,
    to_vector,
    utc,
)
from mindgate.memory.stores._pg_text import search_terms, tsquery
from mindgate.providers._base import EmbedderIdentity, Vector

# Aliases: inside the class, `list` is the list() method.
Records = list[MemoryRecord]
Scored = list[tuple[MemoryRecord, float]]
ScopeCounts = list[tuple[str, str, int]]
Histories = list[HistoryRecord]
Results = list[ChangeResult]
# Up to this many live records a partition is searched exactly: faster than an HNSW scan that then
# filters out other partitions' rows.
EXACT_SCAN_MAX = 1000
# Writes insert their history row in the same statement, from a data-modifying CTE: "{hist} SELECT ...".
_HIST = "INSERT INTO {} (partition, id, memory_id, event, old_memory, new_memory, created_at, actor)"


class PgVectorStore(PgResponses, MemoryStore):
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

    def size_bytes(self) -> int:
        """Disk space of this collection's tables with their indexes and TOAST data."""
        with self._tx() as cur:
            cur.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "WHERE c.relkind = 'r' AND c.relname = ANY(%s) AND pg_table_is_visible(c.oid)",
                        [[f"{self.collection}_{t}" for t in ("memories", "history", "summaries", "embedder",
                                                             "schema_version")]])
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._connect_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- identity ------------------------------------------------------------------------------------

    def open(self, identity: EmbedderIdentity) -> None:
        check_identity(identity, MAX_DIMS)
        with self._tx() as cur:
            conn = cur.connection
            schema.lock(conn, self._tables)
            current = schema.read_identity(conn, self._tables)
            if current is None:
                schema.install_identity(conn, self._tables, identity, hnsw=self.config.hnsw)
            elif current != identity:
                raise self._mismatch(conn, current, identity)
            elif self.config.hnsw:
                schema.create_hnsw(conn, self._tables)
        self._identity = identity

    def _mismatch(self, conn: psycopg.Connection[Any], recorded: EmbedderIdentity,
                  configured: EmbedderIdentity) -> EmbedderMismatchError:
        staging = schema.read_identity(conn, self._tables, "next")
        extra = " (a reindex to it is in progress)" if staging == configured else ""
        return EmbedderMismatchError(
            f"the {self.collection!r} collection holds vectors made by {recorded.describe()}, but the embedder "
            f"now configured is {configured.describe()}{extra}",
            hint="run `mindgate reindex` to re-embed every memory with the new embedder, "
                 "or configure the old embedder again")

    def recorded_identity(self) -> EmbedderIdentity | None:
        with self._tx() as cur:
            return schema.read_identity(cur.connection, self._tables)

    def _require_open(self) -> EmbedderIdentity:
        if self._identity is None:
            raise StoreError(f"the pgvector store {self.collection!r} was not opened",
                             hint="call store.open(embedder_identity) first")
        return self._identity

    def _writable(self, cur: psycopg.Cursor[Any]) -> EmbedderIdentity:
        """This store's identity, checked against the recorded one inside the write's transaction (another
        process may have reindexed); recorded again when reset() dropped it."""
        identity = self._require_open()
        conn = cur.connection
        current = schema.read_identity(conn, self._tables)
        if current is None:
            schema.lock(conn, self._tables)
            current = schema.read_identity(conn, self._tables)
            if current is None:
                schema.install_identity(conn, self._tables, identity, hnsw=self.config.hnsw)
                return identity
        if current != identity:
            raise reindexed_since_open(f"the {self.collection!r} collection", current, identity)
        return identity

    # -- writes --------------------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> Results:
        for change in changes:
            check_change(change)
        if not changes:
            return []
        identity = self._require_open()
        vectors = [None if isinstance(c, DeleteChange) else
                   check_vector(c.vector, identity.dims, f"the vector of memory {_id_of(c)!r}") for c in changes]
        metadata = [metadata_jsonb(c.record.metadata) if isinstance(c, AddChange) else
                    metadata_jsonb(c.metadata) if isinstance(c, UpdateChange) and c.metadata is not None else None
                    for c in changes]
        now = utcnow()
        add_ids = [c.record.id for c in changes if isinstance(c, AddChange)]
        with self._tx() as cur:
            self._writable(cur)
            taken: set[str] = set()
            if add_ids:  # ids are unique across partitions; one (multi-shard) lookup per batch
                cur.execute(self._q("SELECT id FROM {memories} WHERE id = ANY(%s)"), [add_ids])
                taken = {r[0] for r in cur.fetchall()}
            return [self._apply_one(cur, *item, now, taken) for item in zip(changes, vectors, metadata, strict=True)]

    def _apply_one(self, cur: psycopg.Cursor[Any], change: Change, vector: Any, metadata: Jsonb | None,
                   now: datetime, taken: set[str]) -> ChangeResult:
        if isinstance(change, AddChange):
            return self._add(cur, change, vector, metadata, now, taken)
        where, params = scope_sql(change.scope)
        new_hash = content_hash(change.memory) if isinstance(change, UpdateChange) else ""
        # Does the new text equal another live fact in the same exact scope? Then the update merges into
        # it: this record is deleted (the unique constraint still guards against a racing writer).
        cur.execute(self._q(
            "SELECT m.partition, m.memory, EXISTS (SELECT 1 FROM {memories} o WHERE o.partition = m.partition "
            "AND o.scope_key = m.scope_key AND o.hash = %s AND o.deleted_at IS NULL AND o.id <> m.id) "
            "FROM {memories} m WHERE m.id = %s AND {} FOR UPDATE", where), [new_hash, change.id, *params])
        row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"memory {change.id!r} not found in scope {change.scope.as_dict()}",
                                hint="check the id and pass the scope it was stored under; nothing was changed")
        partition, old, clash = row
        if isinstance(change, UpdateChange) and not clash:
            cur.execute(self._q(
                "WITH upd AS (UPDATE {memories} SET memory = %s, hash = %s, embedding = %s, embedding_next = NULL, "
                "metadata = coalesce(%s, metadata), updated_at = %s WHERE partition = %s AND id = %s "
                "RETURNING partition, id) "
                "{hist} SELECT partition, gen_random_uuid()::text, id, 'UPDATE', %s, %s, %s, %s FROM upd"),
                [change.memory, new_hash, vector, metadata, now, partition, change.id,
                 old, change.memory, now, change.actor])
            return ChangeResult(change.id, change.memory, "UPDATE", previous_memory=old)
        cur.execute(self._q(
            "WITH del AS (UPDATE {memories} SET deleted_at = %s WHERE partition = %s AND id = %s "
            "RETURNING partition, id) "
            "{hist} SELECT partition, gen_random_uuid()::text, id, 'DELETE', %s, NULL, %s, %s FROM del"),
            [now, partition, change.id, old, now, change.actor])
        return ChangeResult(change.id, old, "DELETE")

    def _add(self, cur: psycopg.Cursor[Any], change: AddChange, vector: Any, metadata: Jsonb | None,
             now: datetime, taken: set[str]) -> ChangeResult:
        rec, scope = change.record, change.record.scope
        if rec.id not in taken:
            try:
                cur.execute(self._q(
                    "WITH ins AS (INSERT INTO {memories} (partition, id, scope_key, user_id, agent_id, run_id, "
                    "memory, hash, metadata, created_at, updated_at, embedding, key_context) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (partition, scope_key, hash) WHERE deleted_at IS NULL DO NOTHING "
                    "RETURNING partition, id, memory) "
                    "{hist} SELECT partition, gen_random_uuid()::text, id, 'ADD', NULL, memory, %s, %s FROM ins "
                    "RETURNING memory_id"),
                    [scope.partition, rec.id, scope.key, scope.user_id, scope.agent_id, scope.run_id, rec.memory,
                     rec.hash, metadata, utc(rec.created_at), utc(rec.updated_at), vector, rec.key_context, now,
                     change.actor])
            except pg_errors.UniqueViolation:  # the primary key: the same id earlier in this batch
                raise _id_taken(rec.id) from None
            if cur.fetchone() is not None:
                return ChangeResult(rec.id, rec.memory, "ADD")
        # The fact is already stored live in this exact scope (a retried ADD lands here too): NONE.
        cur.execute(self._q("SELECT id, memory FROM {memories} WHERE partition = %s AND scope_key = %s AND hash = %s "
                            "AND deleted_at IS NULL"), [scope.partition, scope.key, rec.hash])
        existing = cur.fetchone()
        if existing is None:
            raise _id_taken(rec.id)
        return ChangeResult(existing[0], existing[1], "NONE")

    def delete_scope(self, scope: Scope, actor: str | None = None) -> int:
        where, params = scope_sql(scope)
        now = utcnow()
        with self._tx() as cur:
            cur.execute(self._q(
                "WITH del AS (UPDATE {memories} m SET deleted_at = %s WHERE {} RETURNING m.partition, m.id, m.memory) "
                "{hist} SELECT partition, gen_random_uuid()::text, id, 'DELETE', memory, NULL, %s, %s FROM del", where),
                [now, *params, now, actor])
            deleted = max(cur.rowcount, 0)
            cur.execute(self._q("DELETE FROM {summaries} WHERE partition = %s"), [scope.partition])
            return deleted

    def reset(self) -> None:
        with self._tx() as cur:
            schema.lock(cur.connection, self._tables)
            cur.execute(self._q("TRUNCATE {history}, {memories}, {summaries}"))
            cur.execute(self._q("DELETE FROM {embedder}"))
            cur.execute(self._q("DROP INDEX IF EXISTS {pending}"))

    # -- the context-summary cache -------------------------------------------------------------------

    def context_summaries(self, partition: str, conversation: str, kind: str, *,
                          limit: int = 8) -> builtins.list[ContextSummary]:
        check_count("limit", limit)
        with self._tx() as cur:
            cur.execute(self._q("SELECT covered, prefix, kind, text, created_at FROM {summaries} WHERE partition = %s "
                                "AND conversation = %s AND kind = %s ORDER BY covered DESC LIMIT %s"),
                        [partition, conversation, kind, limit])
            rows = cur.fetchall()
        return [ContextSummary(partition, conversation, int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def put_context_summary(self, entry: ContextSummary) -> None:
        with self._tx() as cur:
            cur.execute(self._q("INSERT INTO {summaries} (partition, conversation, prefix, kind, covered, text, "
                                "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (partition, "
                                "conversation, prefix, kind) DO UPDATE SET covered = excluded.covered, "
                                "text = excluded.text, created_at = excluded.created_at"),
                        [entry.partition, entry.conversation, entry.prefix, entry.kind, entry.covered, entry.text,
                         entry.created_at])

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
        return to_record(row) if row else None

    def list(self, scope: Scope, flt: Filter | None = None, *, limit: int = 100,
             offset: int = 0) -> Records:
        check_count("limit", limit)
        check_count("offset", offset)
        where, params = _where(scope, flt)
        with self._tx() as cur:
            cur.execute(self._q("SELECT {} FROM {memories} m WHERE {} ORDER BY m.created_at DESC, m.id "
                                "LIMIT %s OFFSET %s", COLUMNS, where), [*params, limit, offset])
            return [to_record(r) for r in cur.fetchall()]

    def count(self, scope: Scope, flt: Filter | None = None) -> int:
        where, params = _where(scope, flt)
        with self._tx() as cur:
            cur.execute(self._q("SELECT count(*) FROM {memories} m WHERE {}", where), params)
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def scopes(self, *, limit: int = 1000) -> ScopeCounts:
        check_count("limit", limit)
        with self._tx() as cur:
            cur.execute(self._q(SCOPES_SQL), [limit])
            return [(str(kind), str(scope_id), int(n)) for kind, scope_id, n in cur.fetchall()]

    def vector_search(self, scope: Scope, vector: Vector, k: int,
                      flt: Filter | None = None) -> Scored:
        check_count("k", k)
        if k == 0:
            return []
        where, params = _where(scope, flt)
        with self._tx() as cur:
            current = schema.read_identity(cur.connection, self._tables)
            if current is None:
                return []
            if self._identity is not None and current != self._identity:
                raise reindexed_since_open(f"the {self.collection!r} collection", current, self._identity)
            query = check_vector(vector, current.dims, "the query vector")
            rows: list[Any] = []
            if self.config.hnsw and not self._small_partition(cur, scope):
                cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(min(1000, max(40, 2 * k)))])
                cur.execute(self._q("SELECT {}, m.embedding <=> %s FROM {memories} m WHERE {} "
                                    "AND m.embedding IS NOT NULL ORDER BY m.embedding <=> %s LIMIT %s",
                                    COLUMNS, where), [query, *params, query, k])
                rows = cur.fetchall()
            if len(rows) < k:  # exact: "+ 0" keeps the planner off the index, which cannot pre-filter
                cur.execute(self._q("SELECT {}, m.embedding <=> %s FROM {memories} m WHERE {} "
                                    "AND m.embedding IS NOT NULL ORDER BY (m.embedding <=> %s) + 0, m.id LIMIT %s",
                                    COLUMNS, where), [query, *params, query, k])
                rows = cur.fetchall()
        return [(to_record(r), similarity(r[-1])) for r in rows]

    def _small_partition(self, cur: psycopg.Cursor[Any], scope: Scope) -> bool:
        """Whether the scope's partition holds at most EXACT_SCAN_MAX live records (counted no further)."""
        cur.execute(self._q("SELECT count(*) FROM (SELECT 1 FROM {memories} WHERE partition = %s "
                            "AND deleted_at IS NULL LIMIT %s) s"), [scope.partition, EXACT_SCAN_MAX + 1])
        row = cur.fetchone()
        return bool(row and row[0] <= EXACT_SCAN_MAX)

    def text_search(self, scope: Scope, query: str, k: int,
                    flt: Filter | None = None) -> Scored:
        check_count("k", k)
        if not isinstance(query, str):
            raise InvalidRequestError(f"a text query must be a string, got {type(query).__name__}")
        if k == 0:
            return []
        where, params = _where(scope, flt)
        with self._tx() as cur:
            terms = search_terms(cur, self._tables, query)
            if not terms:
                return []
            cur.execute(self._q("SELECT {}, ts_rank_cd(m.tsv, q.q, 1) AS rank FROM {memories} m, "
                                "(SELECT %s::tsquery AS q) q WHERE m.tsv @@ q.q AND {} "
                                "ORDER BY rank DESC, m.id LIMIT %s",
                                COLUMNS, where), [tsquery(terms), *params, k])
            return [(to_record(r), float(r[-1])) for r in cur.fetchall()]

    def history(self, memory_id: str) -> Histories:
        with self._tx() as cur:
            cur.execute(self._q("SELECT {} FROM {history} WHERE memory_id = %s ORDER BY created_at, seq",
                                HISTORY_COLUMNS), [memory_id])
            return [to_history(r) for r in cur.fetchall()]

    # -- bulk iteration (reindex, migration) ---------------------------------------------------------

    def _pages(self, template: str, batch_size: int, *parts: sql.Composable) -> Iterator[Any]:
        """Rows of ``template`` (with ``id > %s ... ORDER BY id LIMIT %s``) page by page
        (:func:`~mindgate.memory.stores._base.keyset_pages`), each page in its own short transaction."""
        query = self._q(template, *parts)

        def fetch(after: str, limit: int) -> Any:
            with self._tx() as cur:
                cur.execute(query, [after, limit])
                return cur.fetchall()

        return keyset_pages(fetch, batch_size)

    def iter_records(self, *, include_deleted: bool = False,
                     batch_size: int = 1000) -> Iterator[MemoryRecord]:
        live = sql.SQL("" if include_deleted else "AND m.deleted_at IS NULL")
        for row in self._pages("SELECT {} FROM {memories} m WHERE m.id > %s {} ORDER BY m.id LIMIT %s",
                               batch_size, COLUMNS, live):
            yield to_record(row)

    def iter_history(self, *, batch_size: int = 1000) -> Iterator[HistoryRecord]:
        for row in self._pages("SELECT {} FROM {history} WHERE id > %s ORDER BY id LIMIT %s",
                               batch_size, HISTORY_COLUMNS):
            yield to_history(row)

    def iter_vectors(self, batch_size: int = 1000) -> Iterator[tuple[str, Vector]]:
        for row in self._pages("SELECT m.id, m.embedding FROM {memories} m WHERE m.id > %s "
                               "AND m.embedding IS NOT NULL ORDER BY m.id LIMIT %s", batch_size):
            yield row[0], to_vector(row[1])

    # -- reindex -------------------------------------------------------------------------------------

    def reindex_pending(self, identity: EmbedderIdentity, *, limit: int) -> Records:
        """Starts the reindex to ``identity`` (staging) on first call; swaps it in when nothing is left."""
        check_identity(identity, MAX_DIMS)
        check_count("limit", limit, minimum=1)
        with self._tx() as cur:
            conn = cur.connection
            current = schema.read_identity(conn, self._tables)
            if current is None:
                return []
            if current == identity:  # only records stored without a vector (e.g. migrated deleted ones)
                cur.execute(self._q("SELECT {} FROM {memories} m WHERE m.deleted_at IS NULL "
                                    "AND m.embedding IS NULL ORDER BY m.id LIMIT %s", COLUMNS), [limit])
                return [to_record(r) for r in cur.fetchall()]
            schema.lock(conn, self._tables)
            schema.begin_reindex(conn, self._tables, identity)
            cur.execute(self._q("SELECT {} FROM {memories} m WHERE m.deleted_at IS NULL "
                                "AND m.embedding_next IS NULL ORDER BY m.id LIMIT %s", COLUMNS), [limit])
            rows = [to_record(r) for r in cur.fetchall()]
            if not rows:
                self._finish_reindex(cur, identity)
        return rows

    def write_vectors(self, identity: EmbedderIdentity, items: Sequence[tuple[str, Vector]]) -> None:
        check_identity(identity, MAX_DIMS)
        rows = [(check_vector(v, identity.dims, f"the vector of memory {i!r}"), i) for i, v in items]
        with self._tx() as cur:
            conn = cur.connection
            schema.lock(conn, self._tables)
            if schema.read_identity(conn, self._tables) == identity:
                cur.executemany(self._q("UPDATE {memories} SET embedding = %s WHERE id = %s"), rows)
                return
            if schema.read_identity(conn, self._tables, "next") != identity:
                raise StoreError(f"no reindex to {identity.describe()} is in progress in {self.collection!r}",
                                 hint="call reindex_pending(identity, limit=...) first")
            cur.executemany(self._q("UPDATE {memories} SET embedding_next = %s WHERE id = %s "
                                    "AND deleted_at IS NULL"), rows)
            self._finish_reindex(cur, identity)

    def _finish_reindex(self, cur: psycopg.Cursor[Any], identity: EmbedderIdentity) -> None:
        """Swap the staged vectors in if no live record lacks one (caller holds the schema lock)."""
        pending = self._q("SELECT EXISTS (SELECT 1 FROM {memories} WHERE deleted_at IS NULL "
                          "AND embedding_next IS NULL)")
        if cur.execute(pending).fetchone() != (False,):
            return
        # Looks done: block writers (readers go on), check again, then swap.
        cur.execute(self._q("LOCK TABLE {memories} IN EXCLUSIVE MODE"))
        if cur.execute(pending).fetchone() != (False,):
            return
        schema.finish_reindex(cur.connection, self._tables, identity, hnsw=self.config.hnsw)
        self._identity = identity

    # -- migration target ----------------------------------------------------------------------------

    def import_records(self, items: Sequence[tuple[MemoryRecord, Vector | None, bool]]) -> None:
        identity = self._require_open()
        now = utcnow()
        rows = []
        for rec, vector, deleted in items:
            check_record(rec)
            vec = None if vector is None else check_vector(vector, identity.dims, f"the vector of {rec.id!r}")
            s = rec.scope
            rows.append([s.partition, rec.id, s.key, s.user_id, s.agent_id, s.run_id, rec.memory, rec.hash,
                         metadata_jsonb(rec.metadata), utc(rec.created_at), utc(rec.updated_at),
                         now if deleted else None, vec, rec.key_context])
        with self._tx() as cur:
            self._writable(cur)
            cur.executemany(self._q(
                "INSERT INTO {memories} AS t (partition, id, scope_key, user_id, agent_id, run_id, memory, hash, "
                "metadata, created_at, updated_at, deleted_at, embedding, key_context) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (partition, id) DO UPDATE SET scope_key = excluded.scope_key, "
                "user_id = excluded.user_id, agent_id = excluded.agent_id, run_id = excluded.run_id, "
                "memory = excluded.memory, hash = excluded.hash, metadata = excluded.metadata, "
                "created_at = excluded.created_at, updated_at = excluded.updated_at, "
                "deleted_at = CASE WHEN excluded.deleted_at IS NULL THEN NULL "
                "ELSE coalesce(t.deleted_at, excluded.deleted_at) END, "
                "embedding = excluded.embedding, embedding_next = NULL, key_context = excluded.key_context"), rows)

    def import_history(self, items: Sequence[HistoryRecord]) -> None:
        rows = [[h.id, h.memory_id, h.event, h.old_memory, h.new_memory, utc(h.created_at), h.actor, h.memory_id]
                for h in items]
        with self._tx() as cur:
            cur.executemany(self._q(
                "{hist} SELECT m.partition, %s, %s, %s, %s, %s, %s, %s FROM {memories} m WHERE m.id = %s "
                "ON CONFLICT (partition, id) DO NOTHING"), rows)


def _where(scope: Scope, flt: Filter | None) -> tuple[sql.Composable, list[Any]]:
    where, params = scope_sql(scope)
    if flt is None:
        return where, params
    fsql, fparams = filter_sql(flt)
    return sql.SQL("{} AND {}").format(where, fsql), [*params, *fparams]


def _id_taken(memory_id: str) -> InvalidRequestError:
    return InvalidRequestError(f"a memory with id {memory_id!r} already exists",
                               hint="give each new memory a fresh id; nothing was stored")


def _id_of(change: Change) -> str:
    return change.record.id if isinstance(change, AddChange) else change.id
