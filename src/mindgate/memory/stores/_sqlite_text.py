"""Full-text search of the SQLite store: safe FTS5 queries and BM25 ranking inside one partition.

* The query's words (the ``unicode61`` tokenizer's tokens, diacritics removed) become quoted FTS5 strings
  joined by ``OR``: user text is never FTS5 syntax. The stemmer (porter) applies once, inside FTS5.
* A long query keeps only its :data:`MAX_SEARCH_TERMS` most selective words (fewest documents, read
  from an ``fts5vocab`` table over the index): its cost stays bounded however many words it has.
* The match is restricted to the partition's rowid range (see ``partitions`` in the schema), so it reads
  only that partition's postings.
* Ranking is Okapi BM25 (k1=1.2, b=0.75) computed here, with document frequencies and document count
  taken *within the partition*: FTS5's built-in ``bm25()`` counts each term's documents over the whole
  table on every query, which costs milliseconds per common word at a million rows. Per-partition
  statistics also fit the use: relevance among one user's memories. Average document length is the
  table's (constant enough and free to read).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import apsw

from mindgate.memory.stores.base import MAX_SEARCH_TERMS

K1 = 1.2
B = 0.75
MAX_QUERY_TOKENS = 64
STATS_FUNCTION = "mg_term_stats"
VOCAB_TABLE = "temp.mg_fts_vocab"


def query_tokens(conn: apsw.Connection, query: str) -> list[str]:
    """The distinct words of ``query`` as FTS5 would index them before stemming (at most 64)."""
    tokenize = conn.fts5_tokenizer("unicode61", ["remove_diacritics", "2"])
    tokens: Sequence[str] = tokenize(query.encode("utf-8", "replace"), apsw.FTS5_TOKENIZE_QUERY, None,
                                     include_offsets=False, include_colocated=False)  # type: ignore[assignment]
    return list(dict.fromkeys(t for t in tokens if t))[:MAX_QUERY_TOKENS]


def prune(conn: apsw.Connection, tokens: list[str], limit: int = MAX_SEARCH_TERMS) -> list[str]:
    """At most ``limit`` of ``tokens``: those in the fewest documents (the most selective, which also
    weigh most in BM25); words in no document are dropped. Bounds a long query's cost, since every
    document holding any query word is a candidate scored in Python. Document counts are the index's
    (all partitions): cheap to read, and the order they give is what matters."""
    if len(tokens) <= limit:
        return tokens
    stemmer = conn.fts5_tokenizer("porter", ["unicode61", "remove_diacritics", "2"])
    stems: dict[str, str] = {}
    for token in tokens:
        stemmed: Sequence[str] = stemmer(token.encode("utf-8"), apsw.FTS5_TOKENIZE_QUERY, None,
                                         include_offsets=False, include_colocated=False)  # type: ignore[assignment]
        stems[token] = stemmed[0] if stemmed else token
    terms = sorted(set(stems.values()))
    rows = conn.execute(f"SELECT term, doc FROM {VOCAB_TABLE} WHERE term IN ({','.join('?' * len(terms))})",
                        terms).fetchall()
    found: dict[str, int] = {str(term): int(doc) for term, doc in rows}  # type: ignore[arg-type]
    kept = sorted((t for t in tokens if found.get(stems[t], 0) > 0), key=lambda t: (found[stems[t]], t))
    return kept[:limit]


def match_expression(tokens: Sequence[str]) -> str:
    """FTS5 query matching rows that contain any of ``tokens``; each token is a quoted string."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in tokens)


def register(conn: apsw.Connection) -> None:
    """Install the auxiliary function that reports a row's length and per-phrase term frequencies."""
    conn.register_fts5_function(STATS_FUNCTION, _term_stats)
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {VOCAB_TABLE} USING fts5vocab(main, memories_fts, row)")


def _term_stats(api: apsw.FTS5ExtensionApi, *args: apsw.SQLiteValue) -> str:
    # "<table average length> <row length> <tf of phrase 0> <tf of phrase 1> ..."; the average is
    # the same for every row of a query, so it is formatted once per query (aux data).
    average = api.aux_data
    if average is None:
        average = api.aux_data = str(api.column_total_size(0) / (api.row_count or 1))
    tfs = " ".join(str(len(api.phrase_column_offsets(i, 0))) for i in range(api.phrase_count))
    return f"{average} {api.column_size(0)} {tfs}"


def bm25(candidates: Sequence[tuple[int, str]], documents: int) -> list[tuple[int, float]]:
    """BM25 of each candidate ``(rowid, stats)`` given ``documents`` in the partition; best first.

    Every document of the partition that contains a query term is a candidate, so counting candidates
    per term gives the exact in-partition document frequency.
    """
    if not candidates:
        return []
    rows = [(rowid, stats.split()) for rowid, stats in candidates]
    average = float(rows[0][1][0]) or 1.0
    phrases = range(2, len(rows[0][1]))
    df = dict.fromkeys(phrases, 0)
    for _, fields in rows:
        for i in phrases:
            if fields[i] != "0":
                df[i] += 1
    n = max(documents, len(rows))
    idf = {i: math.log(1.0 + (n - d + 0.5) / (d + 0.5)) for i, d in df.items()}
    scored: list[tuple[int, float]] = []
    for rowid, fields in rows:
        norm = K1 * (1.0 - B + B * int(fields[1]) / average)
        score = 0.0
        for i in phrases:
            if fields[i] != "0":
                tf = int(fields[i])
                score += idf[i] * tf * (K1 + 1.0) / (tf + norm)
        scored.append((rowid, score))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored
