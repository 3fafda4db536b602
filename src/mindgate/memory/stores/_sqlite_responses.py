"""Stored responses in the SQLite store (table ``responses``, migration 002): each one row, JSON columns."""

from __future__ import annotations

import json
from typing import Any

from mindgate.memory.stores._base import StoredResponse
from mindgate.memory.stores._sqlite_conn import Connections

_COLUMNS = "id, owner, created_at, expires_at, response, input_items, context"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SQLiteResponses:
    """The stored-response methods of :class:`~mindgate.memory.stores._base.MemoryStore` over ``_db``."""

    _db: Connections

    def put_response(self, response: StoredResponse) -> None:
        with self._db.write() as conn:
            conn.execute(f"INSERT OR REPLACE INTO responses ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (response.id, response.owner, response.created_at, response.expires_at,
                          _dump(response.response), _dump(response.input_items), _dump(response.context)))

    def get_response(self, response_id: str, now: float) -> StoredResponse | None:
        with self._db.read() as conn:
            rows = list(conn.execute(f"SELECT {_COLUMNS} FROM responses WHERE id = ? "
                                     "AND (expires_at IS NULL OR expires_at > ?)", (response_id, now)))
        if not rows:
            return None
        rid, owner, created, expires, body, items, context = rows[0]
        return StoredResponse(str(rid), owner, float(created), None if expires is None else float(expires),
                              json.loads(body), json.loads(items), json.loads(context))

    def delete_response(self, response_id: str) -> bool:
        with self._db.write() as conn:
            conn.execute("DELETE FROM responses WHERE id = ?", (response_id,))
            return bool(conn.changes())

    def purge_responses(self, now: float) -> int:
        with self._db.write() as conn:
            conn.execute("DELETE FROM responses WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            return int(conn.changes())
