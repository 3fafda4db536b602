-- mindgate SQLite memory store, schema version 3: the context-summary cache (see base.ContextSummary).
CREATE TABLE context_summaries (
    partition    TEXT NOT NULL,
    conversation TEXT NOT NULL,    -- digest of the conversation's first turn
    prefix       TEXT NOT NULL,    -- digest of the covered messages
    kind         TEXT NOT NULL CHECK (kind IN ('summary', 'memory')),
    covered      INTEGER NOT NULL CHECK (covered >= 0),
    text         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (partition, conversation, prefix, kind)
);
CREATE INDEX context_summaries_latest ON context_summaries (partition, conversation, kind, covered DESC);
