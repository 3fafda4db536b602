"""Writing copied records and history into the SQLite store (the target side of ``mindgate migrate``).

Records are upserted by id, history rows are inserted unless their id is already there, so a repeated or
interrupted copy converges (the contract of :meth:`~mindgate.memory.stores._base.MemoryStore.import_records`).
A soft-deleted record gets no vector and no full-text row, as in this store's own deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import apsw

from mindgate.errors import StoreError
from mindgate.memory.stores._base import HistoryRecord, MemoryRecord
from mindgate.memory.stores._sqlite_sql import iso, metadata_json, slot_range

Imported = tuple[MemoryRecord, bytes | None, bool]
"""A record, its vector as this store's blob (None: no vector), whether it is soft-deleted."""


def import_record(conn: apsw.Connection, item: Imported, *, now: str, tables: Sequence[str], active_table: str,
                  active_gen: int, slot_of: Callable[[str], int]) -> None:
    """Replace (or insert) one record with its vector and full-text row, in the caller's transaction.

    ``tables`` are the vector tables a replaced record's vector may be in; ``slot_of(partition)`` gives the
    partition's rowid slot (creating it when new)."""
    rec, blob, deleted = item
    scope = rec.scope
    deleted_at = now if deleted else None
    old = conn.execute("SELECT rowid, deleted_at FROM memories WHERE id = ?", (rec.id,)).fetchone()
    if old is not None:
        rowid = old[0]
        deleted_at = (old[1] or now) if deleted else None  # a repeated copy keeps the first deletion time
        for table in tables:
            conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
        conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (rowid,))
        conn.execute("DELETE FROM memories WHERE rowid = ?", (rowid,))
    lo, hi = slot_range(slot_of(scope.partition))
    try:
        inserted: Any = conn.execute(
            "INSERT INTO memories (rowid, id, partition, scope_key, user_id, agent_id, run_id, memory, hash, "
            "metadata, created_at, updated_at, deleted_at, vec_gen, key_context) "
            "SELECT coalesce(max(rowid) + 1, ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM memories "
            "WHERE rowid BETWEEN ? AND ? RETURNING rowid",
            (lo, rec.id, scope.partition, scope.key, scope.user_id, scope.agent_id, scope.run_id, rec.memory,
             rec.hash, metadata_json(rec.metadata), iso(rec.created_at),
             iso(rec.updated_at) if rec.updated_at else None, deleted_at, active_gen, rec.key_context, lo,
             hi)).fetchone()
    except apsw.ConstraintError as exc:
        raise StoreError(f"memory {rec.id!r} duplicates the text of another live memory in scope "
                         f"{scope.as_dict()} that the target already holds",
                         hint="migrate into an empty store, or into an earlier copy of the same source") from exc
    rowid = inserted[0]
    if deleted:
        return
    if blob is not None:
        conn.execute(f"INSERT INTO {active_table} (rowid, part, embedding) VALUES (?, ?, ?)",
                     (rowid, scope.partition, blob))
    conn.execute("INSERT INTO memories_fts (rowid, memory) VALUES (?, ?)", (rowid, rec.memory))


def import_history(conn: apsw.Connection, items: Sequence[HistoryRecord]) -> None:
    """Insert history rows whose id is not there yet."""
    conn.executemany("INSERT INTO history (id, memory_id, event, old_memory, new_memory, created_at, actor) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                     [(h.id, h.memory_id, h.event, h.old_memory, h.new_memory, iso(h.created_at), h.actor)
                      for h in items])
