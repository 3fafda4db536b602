"""Metadata filters: parsed and validated once, then compiled by each store.

Accepted shapes (mem0 v2 style)::

    {"category": "movies"}                          # eq
    {"rating": {"gte": 4}, "lang": {"in": ["en", "de"]}}   # several keys = AND
    {"AND": [f1, f2]}, {"OR": [f1, f2]}, {"NOT": f}
    {"tags": {"contains": "jazz"}}                  # substring of a string, or element of a list

Operators: eq, ne, in, nin, gt, gte, lt, lte, contains, icontains. Anything else is a
:class:`~mindgate.errors.FilterError`; a filter is never silently dropped. A filter holds at most
:data:`MAX_TERMS` conditions, nested at most :data:`MAX_DEPTH` levels, and an ``in``/``nin`` list at most
:data:`MAX_VALUES` values (a 400 naming the limit beyond).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from mindgate.errors import FilterError

OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "icontains")
LOGICAL = ("AND", "OR", "NOT")
Scalar = str | int | float | bool | None
_FIELD = re.compile(r"^[A-Za-z0-9_\-.]{1,128}$")
MAX_DEPTH = 16
MAX_TERMS = 100  # conditions in one filter: keeps the compiled SQL far inside SQLite's expression depth
MAX_VALUES = 1000  # values of one ``in`` / ``nin`` list (bound as one array, so not a depth concern)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    item: Filter


Filter = Condition | And | Or | Not


def parse_filters(raw: dict[str, Any] | None) -> Filter | None:
    """Parse a filters dict into a :data:`Filter` tree (None for no filter)."""
    if raw is None or raw == {}:
        return None
    parsed = _parse(raw, depth=0)
    terms = _count(parsed)
    if terms > MAX_TERMS:
        raise FilterError(f"the filter has {terms} conditions; the limit is {MAX_TERMS}",
                          hint="use `in` with a list of values instead of many `eq` conditions joined by OR")
    return parsed


def _count(flt: Filter) -> int:
    if isinstance(flt, Condition):
        return 1
    if isinstance(flt, Not):
        return _count(flt.item)
    return sum(_count(f) for f in flt.items)


def _parse(raw: Any, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise FilterError(f"filters are nested deeper than {MAX_DEPTH} levels",
                          hint="flatten the filter")
    if not isinstance(raw, dict) or not raw:
        raise FilterError(f"a filter must be a non-empty object, got {raw!r}",
                          hint='e.g. {"category": "movies"} or {"AND": [...]}')
    items: list[Filter] = []
    for key, value in raw.items():
        if key in ("AND", "OR"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters, got {value!r}")
            parts = tuple(_parse(v, depth + 1) for v in value)
            items.append(And(parts) if key == "AND" else Or(parts))
        elif key == "NOT":
            items.append(Not(_parse(value, depth + 1)))
        elif key.upper() in LOGICAL or key.lstrip("$").upper() in LOGICAL:
            raise FilterError(f"logical operator {key!r} must be written {key.lstrip('$').upper()!r}")
        else:
            items.extend(_field_conditions(key, value))
    return items[0] if len(items) == 1 else And(tuple(items))


def _field_conditions(field: str, value: Any) -> list[Filter]:
    if not _FIELD.match(field):
        raise FilterError(f"invalid filter field name {field!r}",
                          hint="use letters, digits, '_', '-' or '.' (up to 128 characters)")
    if not isinstance(value, dict):
        return [Condition(field, "eq", _scalar(field, "eq", value))]
    if not value:
        raise FilterError(f"filter on {field!r} has no operator", hint=f"operators: {', '.join(OPERATORS)}")
    out: list[Filter] = []
    for op, operand in value.items():
        name = op.lstrip("$")
        if name not in OPERATORS:
            raise FilterError(f"unknown filter operator {op!r} on field {field!r}",
                              hint=f"valid operators: {', '.join(OPERATORS)}")
        if name in ("in", "nin"):
            if not isinstance(operand, list) or not operand:
                raise FilterError(f"operator {name!r} on {field!r} takes a non-empty list, got {operand!r}")
            if len(operand) > MAX_VALUES:
                raise FilterError(f"operator {name!r} on {field!r} has {len(operand)} values; the limit is "
                                  f"{MAX_VALUES}", hint="split the query, or tag the memories with a category")
            out.append(Condition(field, name, tuple(_scalar(field, name, v) for v in operand)))
        elif name in ("gt", "gte", "lt", "lte"):
            if isinstance(operand, bool) or not isinstance(operand, (int, float, str)):
                raise FilterError(f"operator {name!r} on {field!r} takes a number or string, got {operand!r}")
            out.append(Condition(field, name, _scalar(field, name, operand)))
        elif name in ("contains", "icontains"):
            if not isinstance(operand, (str, int, float)) or isinstance(operand, bool):
                raise FilterError(f"operator {name!r} on {field!r} takes a string or number, got {operand!r}")
            out.append(Condition(field, name, _scalar(field, name, operand)))
        else:
            out.append(Condition(field, name, _scalar(field, name, operand)))
    return out


def _scalar(field: str, op: str, value: Any) -> Scalar:
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        raise FilterError(f"filter value for {field!r} ({op}) is outside the 64-bit integer range: {value}")
    if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
        raise FilterError(f"filter value for {field!r} ({op}) holds a lone surrogate: {value!r}",
                          hint="send proper UTF-8 text")
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"filter value for {field!r} ({op}) is not a finite number: {value!r}")
        return value
    raise FilterError(f"filter value for {field!r} ({op}) must be a string, number, boolean or null, "
                      f"got {type(value).__name__}")


def matches(flt: Filter | None, metadata: dict[str, Any]) -> bool:
    """Evaluate a filter in Python (reference semantics the stores' compiled SQL must agree with)."""
    if flt is None:
        return True
    if isinstance(flt, And):
        return all(matches(f, metadata) for f in flt.items)
    if isinstance(flt, Or):
        return any(matches(f, metadata) for f in flt.items)
    if isinstance(flt, Not):
        return not matches(flt.item, metadata)
    present = flt.field in metadata
    actual = metadata.get(flt.field)
    op, value = flt.op, flt.value
    if op == "eq":
        return present and _same(actual, value)
    if op == "ne":
        return not (present and _same(actual, value))
    if op == "in":
        return present and any(_same(actual, v) for v in value)
    if op == "nin":
        return not (present and any(_same(actual, v) for v in value))
    if op in ("contains", "icontains"):
        fold = (lambda s: s.lower()) if op == "icontains" else (lambda s: s)
        if isinstance(actual, str):
            return fold(str(value)) in fold(actual)
        if isinstance(actual, list):
            return any(_same(a, value) or (isinstance(a, str) and fold(a) == fold(str(value))) for a in actual)
        return False
    if actual is None or isinstance(actual, bool) or isinstance(value, bool):
        return False
    if isinstance(actual, (int, float)) and isinstance(value, (int, float)):
        return _compare(op, float(actual), float(value))
    if isinstance(actual, str) and isinstance(value, str):
        return _compare(op, actual, value)
    return False


def _compare(op: str, actual: Any, value: Any) -> bool:
    return bool({"gt": actual > value, "gte": actual >= value, "lt": actual < value, "lte": actual <= value}[op])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)
