"""Full-text queries of the PostgreSQL store: a query as a bounded ``tsquery`` of its most selective words.

* The query's first :data:`MAX_QUERY_WORDS` distinct words go through ``to_tsvector`` with the store's
  text configuration (stemmed lexemes, stop words dropped); each lexeme becomes a quoted ``tsquery``
  operand, so user text is never ``tsquery`` syntax.
* A query with more than :data:`~mindgate.memory.stores._base.MAX_SEARCH_TERMS` lexemes keeps those in the
  fewest documents, as the SQLite store does: every row holding any query word is ranked, so common words
  make a long query cost as much as the table is large, and they weigh least in the ranking anyway.
  Document frequencies come from two cheap sources:

  - the common lexemes' frequencies from the planner's statistics of the ``tsv`` column
    (``pg_stats.most_common_elems``, kept by ANALYZE and autovacuum; reading them touches no row);
  - every other lexeme is rarer than those; its live documents are counted through the GIN index, up to
    :data:`COUNT_CAP` (cheap because it is rare, and bounded while a table has no statistics yet), and a
    lexeme in no live document is dropped.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from mindgate.memory.stores._base import MAX_SEARCH_TERMS
from mindgate.memory.stores._pg_schema import TEXT_CONFIG, Tables

MAX_QUERY_WORDS = 64
COUNT_CAP = 1000
_WORD = re.compile(r"\w+")

_LEXEMES = f"""
WITH stats AS (
    SELECT most_common_elems::text::text[] AS elems, most_common_elem_freqs AS freqs FROM pg_stats
    WHERE schemaname = current_schema() AND tablename = %s AND attname = 'tsv' AND NOT inherited)
SELECT l.lexeme, (SELECT s.freqs[array_position(s.elems, l.lexeme)] FROM stats s)
FROM unnest(tsvector_to_array(to_tsvector('{TEXT_CONFIG}', %s))) AS l(lexeme)"""

_COUNTS = """
SELECT x.lexeme, (SELECT count(*) FROM (SELECT 1 FROM {memories} m
                                       WHERE m.tsv @@ x.q::tsquery AND m.deleted_at IS NULL LIMIT %s) c)
FROM unnest(%s::text[], %s::text[]) AS x(lexeme, q)"""


def operand(lexeme: str) -> str:
    """``lexeme`` as a quoted ``tsquery`` operand, taken as it is (no parsing, no normalisation)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery(lexemes: list[str]) -> str:
    """A ``tsquery`` (text) matching documents that hold any of ``lexemes``."""
    return " | ".join(operand(lexeme) for lexeme in lexemes)


def search_terms(cur: psycopg.Cursor[Any], tables: Tables, query: str, limit: int = MAX_SEARCH_TERMS) -> list[str]:
    """The lexemes of ``query`` to search for: all when there are at most ``limit``, else the ``limit``
    most selective ones that some live document holds (see the module docstring). Empty when the query
    has no searchable word."""
    query = query.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?", not an error
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_QUERY_WORDS]
    if not words:
        return []
    cur.execute(_LEXEMES, [f"{tables.prefix}_memories", " ".join(words)])
    common: dict[str, float] = {}
    rare: list[str] = []
    for lexeme, frequency in cur.fetchall():
        if frequency is None:
            rare.append(lexeme)
        else:
            common[lexeme] = float(frequency)
    if len(common) + len(rare) <= limit:
        return sorted([*common, *rare])
    counts: dict[str, int] = {}
    if rare:
        cur.execute(sql.SQL(_COUNTS).format(memories=tables.memories), [COUNT_CAP, rare, [operand(r) for r in rare]])
        counts = {lexeme: int(n) for lexeme, n in cur.fetchall() if n}
    ranked = sorted(counts, key=lambda lexeme: (counts[lexeme], lexeme))
    ranked += sorted(common, key=lambda lexeme: (common[lexeme], lexeme))
    return ranked[:limit]
