"""Schema of the pgvector store: table names, numbered migrations, the embedder identity and the
vector column it decides.

Layout (``<c>`` is ``collection_name``)::

    <c>_schema_version (version)                        migrations applied
    <c>_embedder       (slot 'current'|'next', ...)     embedder identity; 'next' while a reindex runs
    <c>_memories       (partition, id, ..., embedding vector(<dims>), embedding_next vector, tsv)
    <c>_history        (partition, id, memory_id, ...)  FK (partition, memory_id) -> memories
    <c>_responses      (id, owner, ..., response, ...)  stored Responses API responses (migration 2)
    <c>_summaries      (partition, conversation, prefix, kind, ...)  the context-summary cache (migration 3)

``<c>_memories.key_context`` (migration 4) holds the turn a memory's vector key was built with.

``partition`` (:attr:`Scope.partition`) leads every primary key, unique index and foreign key, so
``<c>_memories``, ``<c>_history`` and ``<c>_summaries`` can be distributed (co-located) by it on Citus;
``schema_version`` and ``embedder`` are tiny reference tables; ``<c>_responses`` is keyed by its own id alone
(it is never joined with memories), so it can be distributed by id. Text columns that are keys use the "C"
collation: byte order is code-point order, the same order Python and SQLite sort ids in.

``embedding`` is typed ``vector(<dims>)`` once an identity is recorded (HNSW needs a fixed dimension).
A reindex to another embedder writes ``embedding_next`` (untyped) and, when no live record lacks one,
swaps the columns in one transaction; until then searches keep using the old vectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from mindgate.errors import StoreError
from mindgate.providers._base import EmbedderIdentity

log = logging.getLogger("mindgate.memory.pgvector")
TEXT_CONFIG = "english"
HNSW_MAX_DIMS = 2000


@dataclass(frozen=True)
class Tables:
    """Identifiers of one collection's tables and indexes."""

    prefix: str

    def ident(self, suffix: str) -> sql.Identifier:
        return sql.Identifier(f"{self.prefix}_{suffix}")

    @property
    def memories(self) -> sql.Identifier:
        return self.ident("memories")

    @property
    def history(self) -> sql.Identifier:
        return self.ident("history")

    @property
    def summaries(self) -> sql.Identifier:
        return self.ident("summaries")

    @property
    def embedder(self) -> sql.Identifier:
        return self.ident("embedder")

    @property
    def version(self) -> sql.Identifier:
        return self.ident("schema_version")

    def names(self) -> dict[str, sql.Identifier]:
        """Placeholders every migration statement may use."""
        return {"memories": self.memories, "history": self.history, "embedder": self.embedder,
                "version": self.version,
                "summaries": self.summaries, "dedupe": self.ident("mem_dedupe"), "live": self.ident("mem_live"),
                "by_id": self.ident("mem_id"), "tsv_idx": self.ident("mem_tsv"),
                "hist_mem": self.ident("hist_mem"), "hist_id": self.ident("hist_id"), "hnsw": self.ident("mem_hnsw"),
                "pending": self.ident("mem_pending"), "responses": self.ident("responses"),
                "resp_expiry": self.ident("resp_expiry"), "sum_latest": self.ident("sum_latest")}


# Each migration is a list of statements formatted with Tables.names(). Never edit a shipped one: add one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE {embedder} (
            slot        text PRIMARY KEY CHECK (slot IN ('current', 'next')),
            provider    text NOT NULL,
            model       text NOT NULL,
            dims        integer NOT NULL CHECK (dims > 0),
            recorded_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {{memories}} (
            partition      text COLLATE "C" NOT NULL,
            id             text COLLATE "C" NOT NULL,
            scope_key      text COLLATE "C" NOT NULL,
            user_id        text COLLATE "C",
            agent_id       text COLLATE "C",
            run_id         text COLLATE "C",
            memory         text NOT NULL,
            hash           text COLLATE "C" NOT NULL,
            metadata       jsonb NOT NULL,
            created_at     timestamptz NOT NULL,
            updated_at     timestamptz,
            deleted_at     timestamptz,
            embedding_next vector,
            tsv            tsvector GENERATED ALWAYS AS (to_tsvector('{TEXT_CONFIG}'::regconfig, memory)) STORED,
            PRIMARY KEY (partition, id))""",
        # Dedupe: one live record per (exact scope, content hash); ADD relies on ON CONFLICT against it.
        "CREATE UNIQUE INDEX {dedupe} ON {memories} (partition, scope_key, hash) WHERE deleted_at IS NULL",
        "CREATE INDEX {live} ON {memories} (partition, created_at DESC, id) WHERE deleted_at IS NULL",
        # get(id) and history(id) take no scope; a plain (non-unique) index serves them, also on Citus.
        "CREATE INDEX {by_id} ON {memories} (id)",
        "CREATE INDEX {tsv_idx} ON {memories} USING gin (tsv)",
        """CREATE TABLE {history} (
            partition  text COLLATE "C" NOT NULL,
            id         text COLLATE "C" NOT NULL,
            memory_id  text COLLATE "C" NOT NULL,
            seq        bigserial,
            event      text NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE')),
            old_memory text,
            new_memory text,
            created_at timestamptz NOT NULL,
            actor      text,
            PRIMARY KEY (partition, id),
            FOREIGN KEY (partition, memory_id) REFERENCES {memories} (partition, id))""",
        "CREATE INDEX {hist_mem} ON {history} (memory_id, created_at, seq)",
        "CREATE INDEX {hist_id} ON {history} (id)",
    ],
    [
        # Stored Responses API responses (store: true); times are Unix seconds, NULL expiry keeps forever.
        """CREATE TABLE {responses} (
            id          text COLLATE "C" PRIMARY KEY,
            owner       text COLLATE "C",
            created_at  double precision NOT NULL,
            expires_at  double precision,
            response    jsonb NOT NULL,
            input_items jsonb NOT NULL,
            context     jsonb NOT NULL)""",
        "CREATE INDEX {resp_expiry} ON {responses} (expires_at) WHERE expires_at IS NOT NULL",
    ],
    [
        """CREATE TABLE {summaries} (
            partition    text COLLATE "C" NOT NULL,
            conversation text COLLATE "C" NOT NULL,
            prefix       text COLLATE "C" NOT NULL,
            kind         text NOT NULL CHECK (kind IN ('summary', 'memory')),
            covered      integer NOT NULL CHECK (covered >= 0),
            text         text NOT NULL,
            created_at   timestamptz NOT NULL,
            PRIMARY KEY (partition, conversation, prefix, kind))""",
        "CREATE INDEX {sum_latest} ON {summaries} (partition, conversation, kind, covered DESC)",
    ],
    [
        # The key context of a memory stored from a conversation (mindgate.memory._keys), for reindex.
        "ALTER TABLE {memories} ADD COLUMN key_context text",
    ],
]
LATEST_VERSION = len(MIGRATIONS)


def lock(conn: psycopg.Connection[Any], tables: Tables) -> None:
    """Serialise schema changes of this collection across processes (until the transaction ends)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"mindgate:{tables.prefix}"])


def migrate(conn: psycopg.Connection[Any], tables: Tables) -> int:
    """Apply pending migrations in one transaction; returns the schema version."""
    names = tables.names()
    with conn.transaction():
        lock(conn, tables)
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                             "applied_at timestamptz NOT NULL DEFAULT now())").format(tables.version))
        row = conn.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(tables.version)).fetchone()
        current = int(row[0]) if row else 0
        if current > LATEST_VERSION:
            raise StoreError(f"the {tables.prefix!r} collection has schema version {current}, newer than this "
                             f"mindgate understands ({LATEST_VERSION})", hint="upgrade mindgate")
        for version in range(current + 1, LATEST_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(sql.SQL(statement).format(**names))
            conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(tables.version), [version])
    return LATEST_VERSION


def read_identity(conn: psycopg.Connection[Any], tables: Tables, slot: str = "current") -> EmbedderIdentity | None:
    row = conn.execute(sql.SQL("SELECT provider, model, dims FROM {} WHERE slot = %s").format(tables.embedder),
                       [slot]).fetchone()
    return EmbedderIdentity(row[0], row[1], int(row[2])) if row else None


def set_identity(conn: psycopg.Connection[Any], tables: Tables, slot: str, identity: EmbedderIdentity) -> None:
    conn.execute(sql.SQL("INSERT INTO {} (slot, provider, model, dims) VALUES (%s, %s, %s, %s) "
                         "ON CONFLICT (slot) DO UPDATE SET provider = excluded.provider, model = excluded.model, "
                         "dims = excluded.dims, recorded_at = now()").format(tables.embedder),
                 [slot, identity.provider, identity.model, identity.dims])


def embedding_dims(conn: psycopg.Connection[Any], tables: Tables) -> int | None:
    """Dimension of the ``embedding`` column, or None when it does not exist yet."""
    row = conn.execute("SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass "
                       "AND attname = 'embedding' AND NOT attisdropped",
                       [f'"{tables.prefix}_memories"']).fetchone()
    return int(row[0]) if row else None


def install_identity(conn: psycopg.Connection[Any], tables: Tables, identity: EmbedderIdentity,
                     *, hnsw: bool) -> None:
    """Record ``identity`` as current and give ``embedding`` its dimension (caller holds :func:`lock`)."""
    dims = embedding_dims(conn, tables)
    if dims != identity.dims:
        if dims is not None:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE embedding IS NOT NULL")
                               .format(tables.memories)).fetchone()
            if row and row[0]:
                raise StoreError(f"the {tables.prefix!r} collection holds {row[0]} vectors of {dims} dims but "
                                 "no recorded embedder", hint="run `mindgate reindex` with the embedder to use")
            conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN embedding").format(tables.memories))
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN embedding vector({})")
                     .format(tables.memories, sql.Literal(int(identity.dims))))
    if hnsw:
        create_hnsw(conn, tables)
    set_identity(conn, tables, "current", identity)


def create_hnsw(conn: psycopg.Connection[Any], tables: Tables) -> None:
    """Create the HNSW index unless it exists (or the vectors are too wide for one: exact search then)."""
    dims = embedding_dims(conn, tables)
    if dims is not None and dims > HNSW_MAX_DIMS:
        log.warning("pgvector's HNSW index takes at most %d dims; %r vectors have %d, so vector search scans "
                    "exactly", HNSW_MAX_DIMS, tables.prefix, dims)
        return
    if not has_index(conn, tables, "mem_hnsw"):
        conn.execute(sql.SQL("CREATE INDEX {hnsw} ON {memories} USING hnsw (embedding vector_cosine_ops) "
                             "WHERE deleted_at IS NULL").format(**tables.names()))


def has_index(conn: psycopg.Connection[Any], tables: Tables, suffix: str) -> bool:
    """Whether the index exists (asked first because CREATE INDEX IF NOT EXISTS locks out writers)."""
    row = conn.execute("SELECT to_regclass(%s)", [f'"{tables.prefix}_{suffix}"']).fetchone()
    return bool(row and row[0] is not None)


def begin_reindex(conn: psycopg.Connection[Any], tables: Tables, identity: EmbedderIdentity) -> None:
    """Make ``identity`` the staging ('next') embedder, discarding vectors staged for another one."""
    names = tables.names()
    if read_identity(conn, tables, "next") != identity:
        conn.execute(sql.SQL("UPDATE {} SET embedding_next = NULL WHERE embedding_next IS NOT NULL")
                     .format(tables.memories))
        set_identity(conn, tables, "next", identity)
    # The work list: live records still without a staged vector (dropped again by the swap).
    if not has_index(conn, tables, "mem_pending"):
        conn.execute(sql.SQL("CREATE INDEX {pending} ON {memories} (id) "
                             "WHERE deleted_at IS NULL AND embedding_next IS NULL").format(**names))


def finish_reindex(conn: psycopg.Connection[Any], tables: Tables, identity: EmbedderIdentity, *, hnsw: bool) -> None:
    """Swap the staged vectors in and make ``identity`` current (caller holds :func:`lock`)."""
    names = tables.names()
    for statement in (
        "DROP INDEX IF EXISTS {pending}",
        "ALTER TABLE {memories} DROP COLUMN IF EXISTS embedding",
        "ALTER TABLE {memories} RENAME COLUMN embedding_next TO embedding",
    ):
        conn.execute(sql.SQL(statement).format(**names))
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding TYPE vector({})")
                 .format(tables.memories, sql.Literal(int(identity.dims))))
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN embedding_next vector").format(tables.memories))
    if hnsw:
        create_hnsw(conn, tables)
    conn.execute(sql.SQL("DELETE FROM {} WHERE slot = 'next'").format(tables.embedder))
    set_identity(conn, tables, "current", identity)
