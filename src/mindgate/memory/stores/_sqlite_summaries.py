"""The context-summary cache in the SQLite store (table ``context_summaries``, migration 003)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mindgate.memory.stores._base import ContextSummary, check_count
from mindgate.memory.stores._sqlite_conn import Connections
from mindgate.memory.stores._sqlite_sql import iso


class SQLiteSummaries:
    """The context-summary methods of :class:`~mindgate.memory.stores._base.MemoryStore` over ``_db``."""

    _db: Connections

    def context_summaries(self, partition: str, conversation: str, kind: str, *,
                          limit: int = 8) -> list[ContextSummary]:
        check_count("limit", limit)
        with self._db.read() as conn:
            rows: Any = conn.execute("SELECT covered, prefix, kind, text, created_at FROM context_summaries WHERE "
                                     "partition = ? AND conversation = ? AND kind = ? ORDER BY covered DESC LIMIT ?",
                                     (partition, conversation, kind, limit)).fetchall()
        return [ContextSummary(partition, conversation, int(r[0]), r[1], r[2], r[3], datetime.fromisoformat(r[4]))
                for r in rows]

    def put_context_summary(self, entry: ContextSummary) -> None:
        with self._db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO context_summaries (partition, conversation, prefix, kind, covered, "
                         "text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (entry.partition, entry.conversation, entry.prefix, entry.kind, entry.covered, entry.text,
                          iso(entry.created_at)))
