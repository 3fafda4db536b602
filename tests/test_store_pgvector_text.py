"""PostgreSQL full-text search of a long query: the store searches for at most 8 of its lexemes, the most
selective ones present in some memory (as the SQLite store does), and still finds the memory the rare word
points at; lexemes are quoted operands, never tsquery syntax. Real PostgreSQL (pgserver)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="the pgvector store needs the `postgres` extra (psycopg)")

import psycopg

from mindgate.memory.stores._base import MAX_SEARCH_TERMS, AddChange, MemoryRecord, Scope, content_hash
from mindgate.memory.stores._pg_schema import Tables
from mindgate.memory.stores._pg_text import operand, search_terms
from mindgate.memory.stores._pgvector import PgVectorStore
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "unit-vectors", 8)
SCOPE = Scope(user_id="walker")
TARGET = "my greyhound Biscuit sleeps on the sofa every afternoon"
TOPICS = ["kitchen", "garden", "office", "station", "market", "library", "harbour", "stadium"]


@pytest.fixture
def admin(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def store(pg_store_factory: Callable[..., PgVectorStore]) -> PgVectorStore:
    store = pg_store_factory()
    store.open(IDENT)
    texts = [f"we talked about the weather and work today near the {TOPICS[i % len(TOPICS)]}, note {i}"
             for i in range(400)] + [TARGET]
    vectors = np.random.default_rng(3).standard_normal((len(texts), 8)).astype(np.float32)
    store.apply([AddChange(MemoryRecord(id=f"m{i:04d}", memory=text, hash=content_hash(text), scope=SCOPE), v)
                 for i, (text, v) in enumerate(zip(texts, vectors, strict=True))])
    return store


def _query() -> str:
    """64 words: common ones, the middling topics, words no memory holds, and two rare ones."""
    absent = [f"unheard{n}" for n in range(49)]
    return " ".join(["weather", "talked", "work", "today", *TOPICS, *absent[:20], "greyhound", *absent[20:],
                     "biscuit", "note"])


def _terms(store: PgVectorStore, admin: psycopg.Connection[Any], query: str) -> list[str]:
    with admin.cursor() as cur:
        return search_terms(cur, Tables(store.collection), query)


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics-yet", "after-analyze"])
def test_a_64_word_query_keeps_its_most_selective_words_and_finds_the_memory(
        store: PgVectorStore, admin: psycopg.Connection[Any], analyzed: bool) -> None:
    if analyzed:  # what autovacuum does once a table has grown: the planner's statistics of `tsv` exist
        admin.execute(f'ANALYZE "{store.collection}_memories"')
        assert admin.execute("SELECT count(*) FROM pg_stats WHERE tablename = %s AND attname = 'tsv' AND "
                             "most_common_elems IS NOT NULL", [f"{store.collection}_memories"]).fetchone() == (1,)
    query = _query()
    assert len(query.split()) == 64
    terms = _terms(store, admin, query)
    assert len(terms) == MAX_SEARCH_TERMS
    assert {"greyhound", "biscuit"} <= set(terms)  # the rarest present words are kept ...
    assert not any(t.startswith("unheard") for t in terms)  # ... words in no memory are dropped ...
    assert not {"weather", "talk", "work", "today", "note"} & set(terms)  # ... and the commonest are not needed
    hits = store.text_search(SCOPE, query, 5)
    assert hits and hits[0][0].memory == TARGET


def test_short_queries_are_kept_whole_and_lexemes_are_never_query_syntax(
        store: PgVectorStore, admin: psycopg.Connection[Any]) -> None:
    assert _terms(store, admin, "the greyhound's sofa!") == ["greyhound", "sofa"]  # stop words dropped, stemmed
    assert _terms(store, admin, "the and of") == []
    assert store.text_search(SCOPE, "sofa & !greyhound | (x:*)", 3)[0][0].memory == TARGET
    for lexeme in ("it's", "back\\slash", "a | b", "c & !d", "e:*"):
        matched = admin.execute("SELECT array_to_tsvector(ARRAY[%s]) @@ %s::tsquery, "
                                "array_to_tsvector(ARRAY['a', 'b', 'c', 'd', 'e']) @@ %s::tsquery",
                                [lexeme, operand(lexeme), operand(lexeme)]).fetchone()
        assert matched == (True, False), lexeme
