"""Stored responses in the pgvector store (table ``<collection>_responses``, migration 2), jsonb columns."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from mindgate.memory.stores._base import StoredResponse

_COLUMNS = "id, owner, created_at, expires_at, response, input_items, context"


class PgResponses:
    """The stored-response methods of :class:`~mindgate.memory.stores._base.MemoryStore`; the host class
    gives ``_tx`` (a cursor in one transaction) and ``_q`` (SQL with the collection's table names)."""

    _tx: Callable[[], AbstractContextManager[psycopg.Cursor[Any]]]
    _q: Callable[..., sql.Composed]

    def put_response(self, response: StoredResponse) -> None:
        with self._tx() as cur:
            cur.execute(self._q(f"INSERT INTO {{responses}} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                                "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, "
                                "created_at = excluded.created_at, expires_at = excluded.expires_at, "
                                "response = excluded.response, input_items = excluded.input_items, "
                                "context = excluded.context"),
                        [response.id, response.owner, response.created_at, response.expires_at,
                         Jsonb(response.response), Jsonb(response.input_items), Jsonb(response.context)])

    def get_response(self, response_id: str, now: float) -> StoredResponse | None:
        with self._tx() as cur:
            row = cur.execute(self._q(f"SELECT {_COLUMNS} FROM {{responses}} WHERE id = %s "
                                      "AND (expires_at IS NULL OR expires_at > %s)"), [response_id, now]).fetchone()
        if row is None:
            return None
        rid, owner, created, expires, body, items, context = row
        return StoredResponse(str(rid), owner, float(created), None if expires is None else float(expires),
                              body, items, context)

    def delete_response(self, response_id: str) -> bool:
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM {responses} WHERE id = %s"), [response_id])
            return cur.rowcount > 0

    def purge_responses(self, now: float) -> int:
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM {responses} WHERE expires_at IS NOT NULL AND expires_at <= %s"), [now])
            return max(cur.rowcount, 0)



