-- mindgate SQLite memory store, schema version 5: a version per partition, so that a process's caches of
-- one partition (in-memory vector copies, text-search counts) stay valid while other partitions change.
-- Every change of a memories row gives its partition a new random 64-bit version, in the same transaction,
-- whoever writes it (this store, another process, an older mindgate still running, a SQL shell): the
-- vector and full-text rows of a record change only together with its memories row. Random, not counted:
-- one version names one state of the partition's rows, even across a file restored from a backup or
-- replaced by another store's file, so a cache compares versions for equality only.
ALTER TABLE partitions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
UPDATE partitions SET version = random();

CREATE TRIGGER memories_added_version AFTER INSERT ON memories BEGIN
    UPDATE partitions SET version = random() WHERE partition = NEW.partition;
END;
CREATE TRIGGER memories_changed_version AFTER UPDATE ON memories BEGIN
    UPDATE partitions SET version = random() WHERE partition IN (OLD.partition, NEW.partition);
END;
CREATE TRIGGER memories_removed_version AFTER DELETE ON memories BEGIN
    UPDATE partitions SET version = random() WHERE partition = OLD.partition;
END;
