"""SQL building blocks of the pgvector store: scope predicates, metadata filters, full-text queries,
input checks and row mapping.

Filters compile to SQL over the ``jsonb`` ``metadata`` column and agree with
:func:`mindgate.memory._filters.matches` (the reference semantics): ``jsonb_typeof`` tells ``true`` from
1 and a missing key (SQL NULL) from JSON ``null``; every leaf is true or false, never NULL, so ``NOT``
inverts exactly like Python's ``not``. Field names and values are always bound parameters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb

from mindgate.errors import InvalidRequestError
from mindgate.memory._filters import And, Condition, Filter, Not, Or
from mindgate.memory.stores._base import (
    AddChange,
    Change,
    DeleteChange,
    HistoryRecord,
    MemoryRecord,
    Scope,
    UpdateChange,
)
from mindgate.providers._base import Vector

COLUMNS = sql.SQL("m.id, m.memory, m.hash, m.user_id, m.agent_id, m.run_id, m.metadata, m.created_at, m.updated_at, "
                  "m.key_context")
HISTORY_COLUMNS = sql.SQL("id, memory_id, event, old_memory, new_memory, created_at, actor")
MAX_DIMS = 16000  # pgvector's limit for the vector type
_CMP = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
Fragment = tuple[sql.Composable, list[Any]]


def scope_sql(scope: Scope, *, live: bool = True) -> Fragment:
    """Predicate on ``m`` for the records a read with ``scope`` sees (live ones unless ``live`` is false)."""
    parts = ["m.partition = %s"]
    params: list[Any] = [scope.partition]
    for column, value in (("user_id", scope.user_id), ("agent_id", scope.agent_id), ("run_id", scope.run_id)):
        if value is not None:
            parts.append(f"m.{column} = %s")
            params.append(value)
    if live:
        parts.append("m.deleted_at IS NULL")
    return sql.SQL(" AND ".join(parts)), params


def filter_sql(flt: Filter) -> Fragment:
    """Boolean SQL expression over ``m.metadata`` that is true where ``matches(flt, metadata)`` is."""
    params: list[Any] = []
    return sql.SQL(_compile(flt, params)), params


def _compile(flt: Filter, params: list[Any]) -> str:
    if isinstance(flt, And):
        return "(" + " AND ".join(_compile(f, params) for f in flt.items) + ")"
    if isinstance(flt, Or):
        return "(" + " OR ".join(_compile(f, params) for f in flt.items) + ")"
    if isinstance(flt, Not):
        return f"(NOT {_compile(flt.item, params)})"
    return _condition(flt, params)


def _condition(c: Condition, params: list[Any]) -> str:
    op = c.op
    if op in ("eq", "ne"):
        params.extend([c.field, Jsonb(c.value)])
        sql_ = "coalesce(m.metadata -> %s = %s::jsonb, false)"
        return sql_ if op == "eq" else f"(NOT {sql_})"
    if op in ("in", "nin"):
        params.extend([c.field, [Jsonb(v) for v in c.value]])
        sql_ = "coalesce(m.metadata -> %s = ANY(%s::jsonb[]), false)"
        return sql_ if op == "in" else f"(NOT {sql_})"
    if op in ("contains", "icontains"):
        return _contains(c, params)
    return _compare(c, params)


def _compare(c: Condition, params: list[Any]) -> str:
    cmp = _CMP[c.op]
    if isinstance(c.value, str):
        params.extend([c.field, c.field, c.value])
        return (f"(CASE WHEN jsonb_typeof(m.metadata -> %s) = 'string' "
                f"THEN (m.metadata ->> %s) COLLATE \"C\" {cmp} %s::text COLLATE \"C\" ELSE false END)")
    # A JSON number written with a fraction or exponent is a float to Python: compare as float8; an
    # integer compares exactly as numeric (Decimal(float) is the float's exact value).
    params.extend([c.field, c.field, c.field, float(c.value), c.field, Decimal(c.value)])
    return (f"(CASE WHEN jsonb_typeof(m.metadata -> %s) = 'number' THEN "
            f"CASE WHEN (m.metadata ->> %s) ~ '[.eE]' THEN (m.metadata ->> %s)::float8 {cmp} %s::float8 "
            f"ELSE (m.metadata ->> %s)::numeric {cmp} %s::numeric END ELSE false END)")


def _contains(c: Condition, params: list[Any]) -> str:
    fold = "lower" if c.op == "icontains" else ""
    needle = str(c.value)
    # A string holds the needle as a substring; a list holds an element equal to the value (numbers as
    # numbers) or a string element equal to the needle (both folded for icontains).
    params.extend([c.field, c.field, needle, c.field, Jsonb(c.value), needle])
    return (f"(CASE jsonb_typeof(m.metadata -> %s) "
            f"WHEN 'string' THEN strpos({fold}(m.metadata ->> %s), {fold}(%s::text)) > 0 "
            f"WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements(m.metadata -> %s) AS e(v) "
            f"WHERE e.v = %s::jsonb OR (jsonb_typeof(e.v) = 'string' AND {fold}(e.v #>> '{{}}') = {fold}(%s::text))) "
            f"ELSE false END)")


def metadata_jsonb(metadata: dict[str, Any] | None) -> Jsonb:
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidRequestError(f"metadata must be an object, got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"metadata is not JSON-serialisable: {exc}",
                                  hint="use strings, finite numbers, booleans, null, lists and objects") from exc
    if "\x00" in text or "\\u0000" in text:
        raise InvalidRequestError("metadata contains a NUL character, which PostgreSQL cannot store",
                                  hint="remove \\u0000 from metadata strings")
    _utf8("metadata", text)
    return Jsonb(metadata, dumps=lambda _obj: text)


# -- input checks ------------------------------------------------------------------------------------




def check_record(rec: MemoryRecord) -> None:
    if not isinstance(rec.scope, Scope):
        raise InvalidRequestError(f"record {rec.id!r} has no Scope")
    if not isinstance(rec.id, str) or not rec.id or not isinstance(rec.memory, str):
        raise InvalidRequestError(f"a memory needs a non-empty string id and string text, got {rec.id!r}")
    _no_nul(rec.id, rec.memory)


def check_change(change: Change) -> None:
    """Reject what is not a change, or what PostgreSQL cannot store (NUL characters)."""
    if isinstance(change, AddChange):
        check_record(change.record)
    elif isinstance(change, UpdateChange):
        if not isinstance(change.memory, str):
            raise InvalidRequestError(f"the new text of memory {change.id!r} is not a string")
        _no_nul(change.memory)
    elif not isinstance(change, DeleteChange):
        raise InvalidRequestError(f"unknown change {type(change).__name__}",
                                  hint="pass AddChange, UpdateChange or DeleteChange objects")


def _no_nul(*texts: str) -> None:
    if any("\x00" in t for t in texts):
        raise InvalidRequestError("a memory text contains a NUL character, which PostgreSQL cannot store",
                                  hint="remove \\x00 from the text")
    for text in texts:
        _utf8("a memory text", text)


def _utf8(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(f"{what} holds a lone surrogate, which is not valid UTF-8",
                                  hint="send proper UTF-8 text") from None


# -- row mapping ---------------------------------------------------------------------------------------


def utc(ts: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC."""
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def to_record(row: Sequence[Any]) -> MemoryRecord:
    """A MemoryRecord from a row that starts with :data:`COLUMNS`."""
    id_, memory, hash_, user_id, agent_id, run_id, metadata, created, updated, key_context = row[:10]
    return MemoryRecord(id=id_, memory=memory, hash=hash_,
                        scope=Scope(user_id=user_id, agent_id=agent_id, run_id=run_id),
                        metadata=metadata if isinstance(metadata, dict) else {},
                        created_at=created.astimezone(UTC),
                        updated_at=updated.astimezone(UTC) if updated else None, key_context=key_context)


def to_history(row: Sequence[Any]) -> HistoryRecord:
    """A HistoryRecord from a row of :data:`HISTORY_COLUMNS`."""
    id_, memory_id, event, old, new, created, actor = row
    return HistoryRecord(id=id_, memory_id=memory_id, event=event, old_memory=old, new_memory=new,
                         created_at=created.astimezone(UTC), actor=actor)


def to_vector(value: Any) -> Vector:
    arr = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(arr, dtype=np.float32)


def similarity(distance: float | None) -> float:
    """pgvector's cosine distance as cosine similarity in [-1, 1]."""
    if distance is None or math.isnan(distance):
        return -1.0
    return max(-1.0, min(1.0, 1.0 - float(distance)))


# The scopes that hold live records, largest first ({memories} is filled in by the store).
SCOPES_SQL = " UNION ALL ".join(
    f"SELECT '{column}' AS kind, {column} AS sid, count(*) AS n FROM {{memories}} "
    f"WHERE deleted_at IS NULL AND {column} IS NOT NULL GROUP BY {column}"
    for column in ("user_id", "agent_id", "run_id")) + " ORDER BY n DESC, kind, sid LIMIT %s"
