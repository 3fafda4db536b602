"""Time for memories and queries: when a memory happened, and which times a question asks about.

* :func:`parse_time` reads one date or date-time: ISO 8601, ``YYYY/MM/DD [(Dow)] [HH:MM[:SS]]`` (the form
  LongMemEval and many chat exports use), or a Unix timestamp. A value without a zone is UTC.
* :func:`event_time` is when a memory happened: the first metadata field of :data:`TIME_KEYS` that parses,
  else its ``created_at``.
* :func:`query_windows` finds the time expressions of a question, relative to a reference time (the
  search's ``reference_time``, default now), as windows: "yesterday", "last Tuesday", "three weeks ago",
  "in the past 2 months", "last month", "this year", "in May", "March 3", "7/22", "2023-05-13",
  "Valentine's day", "before <date>" / "since <date>". Words like "recently" or "most recent" mark a
  preference for newer memories instead. Events as anchors ("before I moved") are not resolved: nothing
  here knows when they happened.

Windows are lenient on purpose: people say "last month" on the day they talk about it, so the windows
that look back ("last month", "N weeks ago") reach to the reference time, and searches use them to boost
(never to drop) memories (see :mod:`mindgate.memory._retrieval`).

The parser is small and stdlib-only: the general-purpose date parsers read free text
without a reference time, or, where they take one, guess wrongly on short mentions inside a question.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

TIME_KEYS = ("event_time", "timestamp", "date", "datetime", "time")
"""Metadata fields read (in this order) for when a memory happened."""

_DAY = timedelta(days=1)
_MONTHS = {name: i for i, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
     ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")], start=1) for name in names}
_WEEKDAYS = {name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                               "saturday", "sunday"))}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "couple of": 2,
            "a few": 3, "few": 3, "several": 3}
_HOLIDAYS = {"valentine's day": (2, 14), "valentines day": (2, 14), "christmas eve": (12, 24),
             "christmas": (12, 25), "new year's eve": (12, 31), "new year's day": (1, 1), "halloween": (10, 31),
             "independence day": (7, 4)}
_RECENT = re.compile(r"\b(recently|most recent(ly)?|latest|lately|these days|currently|nowadays|right now)\b")
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_NUMBER_RE = r"\d+|" + "|".join(sorted((re.escape(k) for k in _NUMBERS), key=len, reverse=True))
_UNIT = r"(day|week|month|year)s?"
_SLASHED = re.compile(r"^(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})(?:\s*\([A-Za-z]{2,9}\))?(?:[ T](\d{1,2}):(\d{2})"
                      r"(?::(\d{2}))?)?$")


@dataclass(frozen=True)
class Window:
    """A span of time a question refers to: ``[start, end)`` (UTC), and the words that gave it."""

    start: datetime
    end: datetime
    text: str

    def distance(self, when: datetime) -> timedelta:
        """Zero inside the window, else how far outside it ``when`` lies."""
        if when < self.start:
            return self.start - when
        if when >= self.end:
            return when - self.end
        return timedelta(0)


@dataclass(frozen=True)
class TimeQuery:
    """What a question says about time: its windows, and whether it prefers recent memories."""

    windows: tuple[Window, ...] = ()
    recent: bool = False

    def __bool__(self) -> bool:
        return bool(self.windows) or self.recent


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(value: Any) -> datetime | None:
    """``value`` as an aware UTC datetime, or None when it is not a date or time this module reads."""
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC) if 0 <= value < 1e11 else None
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not 6 <= len(value.strip()) <= 64:
        return None
    text = value.strip()
    if m := _SLASHED.match(text):
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in m.groups())
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            return None
    try:
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def event_time(metadata: Mapping[str, Any] | None, created_at: datetime) -> datetime:
    """When a memory happened: its first metadata field of :data:`TIME_KEYS` that parses, else ``created_at``."""
    for key in TIME_KEYS:
        if metadata and key in metadata and (when := parse_time(metadata[key])) is not None:
            return when
    return _utc(created_at)


def _number(word: str) -> int | None:
    word = word.strip().lower()
    if word.isdigit():
        return int(word)
    return _NUMBERS.get(word)


def _day_start(when: datetime) -> datetime:
    return datetime.combine(when.date(), time(), UTC)


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _unit_span(unit: str) -> timedelta:
    return {"day": _DAY, "week": 7 * _DAY, "month": 30 * _DAY, "year": 365 * _DAY}[unit]


def _latest_date(month: int, day: int, ref: datetime) -> datetime | None:
    """The last ``month``/``day`` on or before ``ref`` (this year, else last year)."""
    for year in (ref.year, ref.year - 1):
        try:
            candidate = datetime(year, month, day, tzinfo=UTC)
        except ValueError:
            continue
        if candidate <= ref:
            return candidate
    return None


def _day(when: datetime | None, text: str) -> Iterator[Window]:
    if when is not None:
        start = _day_start(when)
        yield Window(start, start + _DAY, text)


def _month_window(month: int, year: int | None, ref: datetime, text: str) -> Window:
    if year is None:
        year = ref.year if month <= ref.month else ref.year - 1
    start = _month_start(year, month)
    end_year, end_month = _add_months(year, month, 1)
    return Window(start, _month_start(end_year, end_month), text)


def _relative(q: str, ref: datetime) -> Iterator[Window]:
    today = _day_start(ref)
    now_end = ref + timedelta(seconds=1)
    if re.search(r"\btoday\b|\btonight\b|\bthis (morning|afternoon|evening)\b", q):
        yield Window(today, today + _DAY, "today")
    if re.search(r"\byesterday\b", q):
        yield Window(today - _DAY, today, "yesterday")
    for m in re.finditer(rf"\b({_NUMBER_RE})\s+{_UNIT}\s+ago\b", q):
        n, unit = _number(m.group(1)), m.group(2)
        if n is None:
            continue
        span = _unit_span(unit)
        center = ref - n * span
        slack = max(span / 2, _DAY) if unit != "day" else _DAY
        yield Window(_day_start(center - slack), _day_start(center + slack) + _DAY, m.group(0))
    for m in re.finditer(rf"\b(?:in |over |during )?the (?:past|last)\s+({_NUMBER_RE})\s+{_UNIT}\b", q):
        n = _number(m.group(1))
        if n is not None:
            yield Window(today - n * _unit_span(m.group(2)), now_end, m.group(0))
    for m in re.finditer(r"\b(last|past|previous|this)\s+(week(?:end)?|month|year)\b", q):
        which, unit = m.groups()
        if unit == "year":
            year = ref.year - (which != "this")
            start = _month_start(year, 1)
        elif unit == "month":
            year, month = _add_months(ref.year, ref.month, 0 if which == "this" else -1)
            start = _month_start(year, month)
        else:
            monday = today - ref.weekday() * _DAY
            start = monday if which == "this" else monday - 7 * _DAY
        yield Window(start, now_end, m.group(0))  # lenient: "last month" is often said in this one
    for m in re.finditer(r"\blast\s+(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", q):
        back = (ref.weekday() - _WEEKDAYS[m.group(1)]) % 7 or 7
        yield from _day(today - back * _DAY, m.group(0))


def _absolute(q: str, ref: datetime) -> Iterator[Window]:
    for m in re.finditer(r"\b(\d{4})[-/](\d{1,2})[-/](\d{1,2})\b", q):
        with_date = parse_time(f"{m.group(1)}/{m.group(2)}/{m.group(3)}")
        yield from _day(with_date, m.group(0))
    for m in re.finditer(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])", q):
        month, day = int(m.group(1)), int(m.group(2))
        if 1 <= month <= 12 and 1 <= day <= 31:
            yield from _day(_latest_date(month, day, ref), m.group(0))
    taken: list[tuple[int, int]] = []  # spans of full dates, so their month is not a window of its own
    for pattern, month_group, day_group in (
            (rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b", 1, 2),
            (rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_RE})\b(?:,?\s+(\d{{4}}))?", 2, 1)):
        for m in re.finditer(pattern, q):
            month, day, year = _MONTHS[m.group(month_group)], int(m.group(day_group)), m.group(3)
            if day > 31:
                continue
            taken.append(m.span())
            when = _latest_date(month, day, ref) if year is None else parse_time(f"{year}/{month}/{day}")
            yield from _day(when, m.group(0))
    # "in May", "March and April", "May 2023" (a bare "may" is the verb unless a preposition or a year says not)
    for m in re.finditer(rf"\b(in|during|of|since|before|after|and|or|early|late|mid)?\s*({_MONTH_RE})\b"
                         rf"(?:\s+(\d{{4}}))?", q):
        word, name, year = m.groups()
        if any(start <= m.start(2) < end for start, end in taken):
            continue
        if name == "may" and not word and not year:
            continue
        if name in ("mar", "jan", "jun", "jul", "aug", "oct", "nov", "dec", "feb", "apr", "sep", "sept") \
                and not (word or year):
            continue
        yield _month_window(_MONTHS[name], int(year) if year else None, ref, m.group(0).strip())
    for name, (month, day) in _HOLIDAYS.items():
        if name in q:
            yield from _day(_latest_date(month, day, ref), name)


def query_windows(query: str, reference: datetime | None = None) -> TimeQuery:
    """The time expressions of ``query`` relative to ``reference`` (default: now), as a :class:`TimeQuery`.

    "before X" / "until X" turns X's window into everything before it, "after X" / "since X" into
    everything from X's start up to the reference time."""
    ref = _utc(reference) if reference is not None else datetime.now(UTC)
    q = re.sub(r"[’`]", "'", query.lower())
    found: list[Window] = []
    for window in [*_relative(q, ref), *_absolute(q, ref)]:
        if any(w.start == window.start and w.end == window.end for w in found):
            continue
        before = re.search(rf"\b(before|until|till|prior to)\s+(the\s+)?{re.escape(window.text)}", q)
        after = re.search(rf"\b(after|since|from)\s+(the\s+)?{re.escape(window.text)}", q)
        if before:
            window = Window(datetime(1, 1, 1, tzinfo=UTC), window.start, before.group(0))
        elif after:
            window = Window(window.start, max(window.end, ref) + timedelta(seconds=1), after.group(0))
        found.append(window)
    return TimeQuery(tuple(found), recent=bool(_RECENT.search(q)))
