-- mindgate SQLite memory store, schema version 1.
-- Vector tables (vec0, one per embedder "vector space") are created by the store at run time, because
-- their dimension comes from the embedder; vector_spaces records which one is active.

-- Each partition owns the rowid range [slot << 32, (slot + 1) << 32): its records are contiguous in
-- every rowid-keyed structure, so a full-text search reads only its partition's part of the index.
-- Slots are never reused (reset() keeps this table), so a cached slot never goes stale.
CREATE TABLE partitions (
    slot      INTEGER PRIMARY KEY AUTOINCREMENT,
    partition TEXT NOT NULL UNIQUE
);

CREATE TABLE memories (
    rowid      INTEGER PRIMARY KEY,          -- (partition slot << 32) + n; shared with vector and FTS rows
    id         TEXT NOT NULL UNIQUE,         -- public id
    partition  TEXT NOT NULL,                -- Scope.partition: user:<id> | agent:<id> | run:<id>
    scope_key  TEXT NOT NULL,                -- Scope.key: the exact scope, for the dedupe constraint
    user_id    TEXT,
    agent_id   TEXT,
    run_id     TEXT,
    memory     TEXT NOT NULL,
    hash       TEXT NOT NULL,
    metadata   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at TEXT NOT NULL,                -- ISO 8601 UTC with microseconds, so text order is time order
    updated_at TEXT,
    deleted_at TEXT,                         -- soft delete: NULL while live
    vec_gen    INTEGER NOT NULL DEFAULT 0    -- vector_spaces.gen of the newest vector written for it
);

-- Dedupe: one live record per (exact scope, content hash).
CREATE UNIQUE INDEX memories_live_hash ON memories (scope_key, hash) WHERE deleted_at IS NULL;
CREATE INDEX memories_live_partition ON memories (partition, created_at DESC, id) WHERE deleted_at IS NULL;
-- The resumable work list of a reindex: live records whose vector is older than the staging space.
CREATE INDEX memories_live_vec_gen ON memories (vec_gen, rowid) WHERE deleted_at IS NULL;

CREATE TABLE history (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    memory_id  TEXT NOT NULL,
    event      TEXT NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE')),
    old_memory TEXT,
    new_memory TEXT,
    created_at TEXT NOT NULL,
    actor      TEXT
);
CREATE INDEX history_memory ON history (memory_id, seq);

CREATE TABLE vector_spaces (
    gen      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: vec_gen comparisons rely on it
    provider TEXT NOT NULL,
    model    TEXT NOT NULL,
    dims     INTEGER NOT NULL CHECK (dims > 0),
    state    TEXT NOT NULL CHECK (state IN ('active', 'staging'))
);
CREATE UNIQUE INDEX vector_spaces_state ON vector_spaces (state);

-- Full text of live records only (ranked by the store's own partition-local BM25, not bm25()).
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    memory,
    content = '', contentless_delete = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
