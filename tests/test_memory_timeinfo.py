"""Time expressions in questions and dates in metadata (mindgate.memory._timeinfo)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from mindgate.memory._timeinfo import event_time, parse_time, query_windows

# A Tuesday afternoon, as LongMemEval writes question dates.
REF = datetime(2023, 4, 18, 16, 50, tzinfo=UTC)


def days(query: str, ref: datetime = REF) -> list[tuple[str, str]]:
    """Each window as (first day, last day), inclusive."""
    return [(w.start.date().isoformat(), (w.end - timedelta(microseconds=1)).date().isoformat())
            for w in query_windows(query, ref).windows]


@pytest.mark.parametrize(("value", "expected"), [
    ("2023/05/13 (Sat) 12:11", datetime(2023, 5, 13, 12, 11, tzinfo=UTC)),
    ("2023/05/13", datetime(2023, 5, 13, tzinfo=UTC)),
    ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, tzinfo=UTC)),
    ("2024-03-01T12:00:00+02:00", datetime(2024, 3, 1, 10, tzinfo=UTC)),
    ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
    (1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    (date(2024, 2, 29), datetime(2024, 2, 29, tzinfo=UTC)),
    (datetime(2024, 2, 29, 8), datetime(2024, 2, 29, 8, tzinfo=UTC)),
])
def test_parse_time_reads_the_common_forms_as_utc(value: object, expected: datetime) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2023/02/30", "not a date", "", True, None, [2023], -5, 1e15])
def test_parse_time_returns_none_for_what_is_not_a_date(value: object) -> None:
    assert parse_time(value) is None


def test_event_time_prefers_a_metadata_date_over_created_at() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert event_time({"date": "2023/05/13 (Sat) 12:11"}, created) == datetime(2023, 5, 13, 12, 11, tzinfo=UTC)
    assert event_time({"event_time": "2022-01-01", "date": "2023/05/13"}, created).year == 2022
    assert event_time({"date": "sometime"}, created) == created
    assert event_time(None, created.replace(tzinfo=None)) == created


@pytest.mark.parametrize(("query", "expected"), [
    ("Who did I meet with during the lunch last Tuesday?", [("2023-04-11", "2023-04-11")]),
    ("What did I cook yesterday?", [("2023-04-17", "2023-04-17")]),
    ("What did I buy today?", [("2023-04-18", "2023-04-18")]),
    ("What did I invest in four weeks ago?", [("2023-03-18", "2023-03-25")]),
    ("Where was I 3 days ago?", [("2023-04-14", "2023-04-16")]),
    ("What happened a couple of months ago?", [("2023-02-02", "2023-03-04")]),
    ("Which shoes did I clean last month?", [("2023-03-01", "2023-04-18")]),
    ("What did I read last week?", [("2023-04-10", "2023-04-18")]),
    ("What did I watch this year?", [("2023-01-01", "2023-04-18")]),
    ("What did I learn in the past two weeks?", [("2023-04-04", "2023-04-18")]),
    ("Which airline did I fly with the most in March and April?",
     [("2023-03-01", "2023-03-31"), ("2023-04-01", "2023-04-30")]),
    ("What did I do in May?", [("2022-05-01", "2022-05-31")]),
    ("What did I do in May 2023?", [("2023-05-01", "2023-05-31")]),
    ("What did I buy on March 3rd?", [("2023-03-03", "2023-03-03")]),
    ("What did I buy on 3 March 2021?", [("2021-03-03", "2021-03-03")]),
    ("Where did I fly on Valentine's day?", [("2023-02-14", "2023-02-14")]),
    ("What happened on 2022-11-05?", [("2022-11-05", "2022-11-05")]),
    ("How many bass did I catch on the 4/2 trip?", [("2023-04-02", "2023-04-02")]),
    ("May I ask what my cat is called?", []),
    ("I may have told you about my dog", []),
    ("What is the name of my therapist?", []),
])
def test_query_windows_relative_to_the_reference_time(query: str, expected: list[tuple[str, str]]) -> None:
    assert days(query) == expected


def test_before_and_since_open_a_window() -> None:
    [before] = query_windows("How many fish did I catch before the 7/22 trip?", REF).windows
    assert before.start.year == 1 and before.end == datetime(2022, 7, 22, tzinfo=UTC)
    [since] = query_windows("What did I buy since 2023-01-05?", REF).windows
    assert since.start == datetime(2023, 1, 5, tzinfo=UTC) and since.end > REF


def test_recent_words_prefer_newer_memories_and_events_are_not_guessed() -> None:
    assert query_windows("Where did I go on my most recent family trip?", REF).recent
    assert query_windows("How many followers do I have currently?", REF).recent
    assert not query_windows("What is my favourite colour?", REF)
    assert not query_windows("What did I buy before I moved?", REF)  # an event, not a time


def test_the_reference_time_defaults_to_now() -> None:
    [window] = query_windows("What did I do yesterday?").windows
    assert window.start.date() == (datetime.now(UTC) - timedelta(days=1)).date()


def test_window_distance_is_zero_inside_and_grows_outside() -> None:
    [window] = query_windows("lunch last Tuesday", REF).windows
    assert window.distance(datetime(2023, 4, 11, 13, tzinfo=UTC)) == timedelta(0)
    assert window.distance(datetime(2023, 4, 13, tzinfo=UTC)) == timedelta(days=1)
    assert window.distance(datetime(2023, 4, 9, tzinfo=UTC)) == timedelta(days=2)
