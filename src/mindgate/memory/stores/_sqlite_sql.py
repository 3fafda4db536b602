"""SQL building blocks of the SQLite store: filters, scope predicates, full-text queries, row mapping.

Filters compile to SQL over the JSON ``metadata`` column and agree with
:func:`mindgate.memory._filters.matches` (the reference semantics): ``json_type`` tells JSON ``true``
from the number 1 and a missing key from ``null``, and every leaf yields 0 or 1, never NULL, so
``NOT`` inverts exactly like Python's ``not``.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import apsw

from mindgate.errors import InvalidRequestError
from mindgate.memory._filters import And, Condition, Filter, Not, Or
from mindgate.memory.stores._base import Candidate, HistoryRecord, MemoryRecord, Scope, check_vector, decode_metadata
from mindgate.providers._base import Vector

RECORD_COLUMNS = "m.rowid, m.id, m.memory, m.hash, m.user_id, m.agent_id, m.run_id, m.metadata, " \
                 "m.created_at, m.updated_at, m.key_context"
T = TypeVar("T")
CANDIDATE_COLUMNS = "m.rowid, m.id, m.created_at, m.updated_at, m.metadata"
_NUMERIC = "('integer','real')"


def scope_sql(scope: Scope, *, include_deleted: bool = False, partition_index: bool = True) -> tuple[str, list[Any]]:
    """Predicate on ``m`` for the live (or also deleted) records a read with ``scope`` sees.

    ``partition_index=False`` keeps SQLite from using the partition index (for a rowid-range scan).
    """
    partition = "m.partition = ?" if partition_index else "+m.partition = ?"
    sql = [partition] if include_deleted else [partition, "m.deleted_at IS NULL"]
    params: list[Any] = [scope.partition]
    for column, value in (("user_id", scope.user_id), ("agent_id", scope.agent_id), ("run_id", scope.run_id)):
        if value is not None:
            sql.append(f"m.{column} = ?")
            params.append(value)
    return " AND ".join(sql), params


def filter_sql(flt: Filter, column: str = "m.metadata") -> tuple[str, list[Any]]:
    """SQL expression (0 or 1) true where ``matches(flt, metadata)`` is."""
    params: list[Any] = []
    return _compile(flt, column, params), params


def _compile(flt: Filter, col: str, params: list[Any]) -> str:
    if isinstance(flt, And):
        return "(" + " AND ".join(_compile(f, col, params) for f in flt.items) + ")"
    if isinstance(flt, Or):
        return "(" + " OR ".join(_compile(f, col, params) for f in flt.items) + ")"
    if isinstance(flt, Not):
        return f"(NOT {_compile(flt.item, col, params)})"
    return f"coalesce({_condition(flt, col, params)}, 0)"


def _condition(c: Condition, col: str, params: list[Any]) -> str:
    path = f'$."{c.field}"'  # the field regex excludes '"', and a dot is part of the key, not nesting
    typ = f"json_type({col}, '{path}')"
    val = f"json_extract({col}, '{path}')"
    op = c.op
    if op in ("eq", "ne"):
        sql = _equals(typ, val, c.value, params)
        return sql if op == "eq" else f"NOT coalesce({sql}, 0)"
    if op in ("in", "nin"):
        # one bound JSON array walked by json_each, not an OR chain (whose depth grows with the list)
        params.append(json.dumps(list(c.value), ensure_ascii=False))
        sql = (f"EXISTS (SELECT 1 FROM json_each(?) AS v WHERE (v.type = {typ} AND v.type IN "
               f"('null','true','false')) OR (v.type IN {_NUMERIC} AND {typ} IN {_NUMERIC} AND v.value = {val}) "
               f"OR (v.type = 'text' AND {typ} = 'text' AND v.value = {val}))")
        return sql if op == "in" else f"NOT {sql}"
    if op in ("contains", "icontains"):
        return _contains(c, col, path, typ, val, params)
    cmp = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    params.append(c.value)
    kind = f"{typ} IN {_NUMERIC}" if isinstance(c.value, int | float) else f"{typ} = 'text'"
    return f"({kind} AND {val} {cmp} ?)"


def _equals(typ: str, val: str, value: Any, params: list[Any]) -> str:
    if value is None:
        return f"({typ} = 'null')"
    if isinstance(value, bool):
        return f"({typ} = '{'true' if value else 'false'}')"
    params.append(value)
    if isinstance(value, int | float):
        return f"({typ} IN {_NUMERIC} AND {val} = ?)"
    return f"({typ} = 'text' AND {val} = ?)"


def _contains(c: Condition, col: str, path: str, typ: str, val: str, params: list[Any]) -> str:
    fold = "mg_lower" if c.op == "icontains" else ""
    needle = str(c.value).lower() if c.op == "icontains" else str(c.value)
    # A string contains the needle as a substring; a list contains an element equal to the value
    # (numbers compare as numbers) or a string element equal to the needle (folded for icontains).
    text = f"instr({fold}({val}), ?) > 0" if fold else f"instr({val}, ?) > 0"
    element = "(e.type = 'text' AND " + (f"{fold}(e.value)" if fold else "e.value") + " = ?)"
    params.extend([needle, needle])
    if isinstance(c.value, int | float):
        params.append(c.value)
        element = f"({element} OR (e.type IN {_NUMERIC} AND e.value = ?))"
    return (f"(({typ} = 'text' AND {text}) OR ({typ} = 'array' AND EXISTS "
            f"(SELECT 1 FROM json_each({col}, '{path}') AS e WHERE {element})))")


SLOT_BITS = 32


def slot_range(slot: int) -> tuple[int, int]:
    """The rowid range [lo, hi] of the partition with ``slot`` (see ``partitions`` in the schema)."""
    lo = slot << SLOT_BITS
    return lo, lo + (1 << SLOT_BITS) - 1


def iso(ts: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order (naive datetimes are taken as UTC)."""
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def metadata_json(metadata: dict[str, Any] | None) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise InvalidRequestError(f"metadata must be an object, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"metadata is not JSON-serialisable: {exc}",
                                  hint="use strings, finite numbers, booleans, null, lists and objects") from exc


@functools.lru_cache(maxsize=4096)
def _scope(user_id: str | None, agent_id: str | None, run_id: str | None) -> Scope:
    # a search reads up to 100 rows of one scope: validate its ids once (Scope is frozen, so shared)
    return Scope(user_id=user_id, agent_id=agent_id, run_id=run_id)


def to_record(row: Sequence[Any]) -> MemoryRecord:
    """A MemoryRecord from a row that starts with :data:`RECORD_COLUMNS`."""
    _rowid, id_, memory, hash_, user_id, agent_id, run_id, metadata, created, updated, key_context = row[:11]
    return MemoryRecord(id=id_, memory=memory, hash=hash_, scope=_scope(user_id, agent_id, run_id),
                        metadata=decode_metadata(metadata), created_at=datetime.fromisoformat(created),
                        updated_at=datetime.fromisoformat(updated) if updated else None, key_context=key_context)


def to_candidate(row: Sequence[Any]) -> Candidate:
    """A search :class:`Candidate` (its ref: the rowid) from a row that starts with :data:`CANDIDATE_COLUMNS`."""
    rowid, id_, created, updated, metadata = row[:5]
    return Candidate(id_, datetime.fromisoformat(created), datetime.fromisoformat(updated) if updated else None,
                     rowid, raw_metadata=metadata)


@dataclass(frozen=True)
class RowReader(Generic[T]):
    """What a search reads per hit: the ``columns`` of ``memories m`` (the rowid first) and how a row that
    starts with them becomes a ``T``."""

    columns: str
    make: Callable[[Sequence[Any]], T]


RECORDS = RowReader(RECORD_COLUMNS, to_record)
CANDIDATES = RowReader(CANDIDATE_COLUMNS, to_candidate)


def by_rowids(conn: apsw.Connection, read: RowReader[T], rowids: Sequence[int]) -> dict[int, T]:
    """The live records with these rowids, as ``read`` makes them, by rowid."""
    if not rowids:
        return {}
    marks = ",".join("?" * len(rowids))
    rows: Any = conn.execute(f"SELECT {read.columns} FROM memories m WHERE m.rowid IN ({marks}) "
                             "AND m.deleted_at IS NULL", list(rowids)).fetchall()
    return {int(r[0]): read.make(r) for r in rows}


def where_sql(scope: Scope, flt: Filter | None, *, partition_index: bool = True) -> tuple[str, list[Any]]:
    """:func:`scope_sql` and, with ``flt``, :func:`filter_sql` joined by AND."""
    where, params = scope_sql(scope, partition_index=partition_index)
    if flt is not None:
        fsql, fparams = filter_sql(flt)
        where, params = f"{where} AND {fsql}", params + fparams
    return where, params


def to_history(row: Sequence[Any]) -> HistoryRecord:
    return HistoryRecord(id=row[0], memory_id=row[1], event=row[2], old_memory=row[3], new_memory=row[4],
                         created_at=datetime.fromisoformat(row[5]), actor=row[6])


def similarity(distance: float) -> float:
    """sqlite-vec's cosine distance as cosine similarity, clamped to [-1, 1]."""
    return max(-1.0, min(1.0, 1.0 - distance))


# The scopes that hold live records, largest first (each id column grouped on its own).
SCOPES_SQL = " UNION ALL ".join(
    f"SELECT '{column}' AS kind, {column} AS sid, count(*) AS n FROM memories "
    f"WHERE deleted_at IS NULL AND {column} IS NOT NULL GROUP BY {column}"
    for column in ("user_id", "agent_id", "run_id")) + " ORDER BY n DESC, kind, sid LIMIT ?"


def new_id() -> str:
    """A UUIDv7 (time-ordered), so history ids sort in creation order across processes to the ms."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def one_row(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first row (a tuple) or None; typed Any because column types depend on the query."""
    return conn.execute(sql, params).fetchone()


def all_rows(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    return conn.execute(sql, params).fetchall()


def vector_blob(vector: Vector, dims: int, what: str = "vector") -> bytes:
    """A vector as vec0 stores it (float32, little-endian), after the store's checks."""
    return check_vector(vector, dims, f"the {what}").astype("<f4", copy=False).tobytes()
