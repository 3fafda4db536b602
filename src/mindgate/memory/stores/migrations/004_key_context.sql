-- mindgate SQLite memory store, schema version 4: the key context of a memory stored from a conversation
-- (the neighbouring turn, see mindgate.memory.keys), kept so that a reindex can rebuild its vector key.
ALTER TABLE memories ADD COLUMN key_context TEXT;
