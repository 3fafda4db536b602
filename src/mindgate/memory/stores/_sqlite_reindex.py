"""Re-embedding in the SQLite store: a second vector space (``staging``) is filled batch by batch beside the
active one and takes its place when every live memory has a vector in it (``mindgate reindex``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import apsw

from mindgate.errors import StoreError
from mindgate.memory.stores._base import MemoryRecord, check_count, check_identity
from mindgate.memory.stores._sqlite_conn import Connections
from mindgate.memory.stores._sqlite_spaces import MAX_DIMS, Space, create_space, drop_space, find_space
from mindgate.memory.stores._sqlite_sql import RECORD_COLUMNS, all_rows, one_row, to_record, vector_blob
from mindgate.providers._base import EmbedderIdentity, Vector


class SQLiteReindex:
    """The reindex methods of :class:`~mindgate.memory.stores._base.MemoryStore` over ``_db``;
    ``_written`` drops what the store caches of the partitions whose vectors changed."""

    path: Path
    _db: Connections
    _identity: EmbedderIdentity | None
    _written: Callable[[set[str]], None]

    def reindex_pending(self, identity: EmbedderIdentity, *, limit: int) -> list[MemoryRecord]:
        check_identity(identity, MAX_DIMS)
        check_count("limit", limit, minimum=1)
        with self._db.write() as conn:
            active = find_space(conn, "active")
            if active is None or active.identity == identity:
                return []
            staging = find_space(conn, "staging")
            if staging is None or staging.identity != identity:
                if staging is not None:
                    drop_space(conn, staging)
                staging = create_space(conn, identity, "staging")
            rows = all_rows(conn, f"SELECT {RECORD_COLUMNS} FROM memories m WHERE m.deleted_at IS NULL AND "
                                "m.vec_gen < ? ORDER BY m.vec_gen, m.rowid LIMIT ?",
                                (staging.gen, limit))
            if not rows:
                self._swap(conn, active, staging)
        return [to_record(r) for r in rows]

    def write_vectors(self, identity: EmbedderIdentity, items: Sequence[tuple[str, Vector]]) -> None:
        check_identity(identity, MAX_DIMS)
        blobs = [(memory_id, vector_blob(vec, identity.dims)) for memory_id, vec in items]
        written: set[str] = set()
        with self._db.write() as conn:
            active, staging = find_space(conn, "active"), find_space(conn, "staging")
            target = next((s for s in (active, staging) if s is not None and s.identity == identity), None)
            if target is None:
                raise StoreError(f"no reindex to {identity.describe()} is in progress in {self.path}",
                                 hint="call reindex_pending(identity, limit=...) first")
            for memory_id, blob in blobs:
                row = one_row(conn, "SELECT rowid, partition FROM memories WHERE id = ? AND deleted_at IS NULL",
                                   (memory_id,))
                if row is None:  # deleted since it was listed: nothing to embed
                    continue
                conn.execute(f"DELETE FROM {target.table} WHERE rowid = ?", (row[0],))
                conn.execute(f"INSERT INTO {target.table} (rowid, part, embedding) VALUES (?, ?, ?)",
                             (row[0], row[1], blob))
                conn.execute("UPDATE memories SET vec_gen = ? WHERE rowid = ?", (target.gen, row[0]))
                written.add(row[1])
            if target is staging and active is not None and one_row(conn,
                    "SELECT 1 FROM memories WHERE deleted_at IS NULL AND vec_gen < ? LIMIT 1",
                    (staging.gen,)) is None:
                self._swap(conn, active, staging)
        self._written(written)

    def _swap(self, conn: apsw.Connection, active: Space, staging: Space) -> None:
        drop_space(conn, active)
        conn.execute("UPDATE vector_spaces SET state = 'active' WHERE gen = ?", (staging.gen,))
        self._identity = staging.identity

