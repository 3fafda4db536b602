"""Full-text search of the SQLite store: safe FTS5 queries and BM25 ranking inside one partition.

* The query's words (the ``unicode61`` tokenizer's tokens, diacritics removed) become quoted FTS5 strings
  joined by ``OR``: user text is never FTS5 syntax. The stemmer (porter) applies once, inside FTS5.
* A long query keeps only its :data:`MAX_SEARCH_TERMS` most selective words (fewest documents in the
  partition, counted up to a cap): its cost stays bounded however many words it has.
* The match is restricted to the partition's rowid range (see ``partitions`` in the schema), so it reads
  only that partition's postings.
* English function words (:data:`STOPWORDS`: "i", "the", "what", ...) are left out of a query that has
  other words: in long conversational memories they occur in nearly every document, so matching them
  made every memory of the partition a candidate scored in Python (60-110 ms at 5,000 memories), while
  their BM25 weight (idf) is near zero. A query of function words only is searched as it is.
* Ranking is Okapi BM25 (k1=1.2, b=0.75) computed here, with document frequencies and document count
  taken *within the partition*: FTS5's built-in ``bm25()`` counts each term's documents over the whole
  table on every query, which costs milliseconds per common word at a million rows. Per-partition
  statistics also fit the use: relevance among one user's memories. Average document length is the
  table's (constant enough and free to read).
* The counts a search reads before it ranks (documents per word in the partition, capped; live
  documents of the partition) are kept in a :class:`~._sqlite_cache.Counts` cache until the partition
  changes (a write to another partition keeps them): a repeated or similar query skips those index
  scans (at 10,000 memories a 64-word query's text search went from ~3 ms to ~0.8 ms of CPU).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

import apsw
import numpy as np

from mindgate.memory.stores._base import MAX_SEARCH_TERMS
from mindgate.memory.stores._sqlite_cache import CountsView

K1 = 1.2
B = 0.75
MAX_QUERY_TOKENS = 64
CANDIDATE_BUDGET = 200  # documents scored in Python per text search (see ranked())
STATS_FUNCTION = "mg_term_stats"
# what ranked() selects per matching document (rowid, term frequencies, length) and from where
STATS_COLUMNS = f"f.rowid, {STATS_FUNCTION}(memories_fts, ?), d.sz"
STATS_FROM = "memories_fts f JOIN memories_fts_docsize d ON d.id = f.rowid"
# as the unicode61 tokenizer yields them (lower case; "don't" gives "don" and "t")
STOPWORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "d", "did",
    "didn", "do", "does", "doesn", "doing", "don", "down", "during", "each", "few", "for", "from", "further", "get",
    "got", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how",
    "i", "if", "in", "into", "is", "isn", "it", "its", "itself", "just", "ll", "m", "me", "might", "more", "most",
    "must", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our",
    "ours", "ourselves", "out", "over", "own", "re", "s", "same", "she", "should", "so", "some", "such", "t", "than",
    "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "ve", "very", "was", "wasn", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself",
    "yourselves"
})


def query_tokens(conn: apsw.Connection, query: str) -> list[str]:
    """The distinct words of ``query`` as FTS5 would index them before stemming (at most 64)."""
    tokenize = conn.fts5_tokenizer("unicode61", ["remove_diacritics", "2"])
    tokens: Sequence[str] = tokenize(query.encode("utf-8", "replace"), apsw.FTS5_TOKENIZE_QUERY, None,
                                     include_offsets=False, include_colocated=False)  # type: ignore[assignment]
    return list(dict.fromkeys(t for t in tokens if t))[:MAX_QUERY_TOKENS]


def content_words(tokens: list[str]) -> list[str]:
    """``tokens`` without :data:`STOPWORDS`, unless that leaves none."""
    kept = [t for t in tokens if t not in STOPWORDS]
    return kept or tokens


def prune(conn: apsw.Connection, tokens: list[str], lo: int, hi: int, limit: int = MAX_SEARCH_TERMS,
          cache: CountsView | None = None) -> list[str]:
    """At most ``limit`` of ``tokens``: those in the fewest documents of the partition (rowids ``[lo, hi]``),
    the most selective, which also weigh most in its BM25; words in none of its documents are dropped.
    Bounds a long query's cost, since every document holding any query word is a candidate. Each word's
    count is capped at ``CANDIDATE_BUDGET + 1`` (the counts :func:`ranked` reads next, shared through
    ``cache``): a word in more documents than that is common in the partition, and such words are kept
    longest first. Counting in the partition, capped, costs a bounded seek per word at any store size; the
    index-wide counts this used before walked each word's whole document list (tens of ms for a long
    query's first search at a million memories)."""
    if len(tokens) <= limit:
        return tokens
    counts = {t: _count(conn, [t], lo, hi, CANDIDATE_BUDGET + 1, cache) for t in tokens}
    return sorted((t for t in tokens if counts[t]), key=lambda t: (counts[t], -len(t), t))[:limit]


def match_expression(tokens: Sequence[str]) -> str:
    """FTS5 query matching rows that contain any of ``tokens``; each token is a quoted string."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in tokens)


def register(conn: apsw.Connection) -> None:
    """Install the auxiliary function that reports a row's length and per-phrase term frequencies."""
    conn.register_fts5_function(STATS_FUNCTION, _term_stats)


def _term_stats(api: apsw.FTS5ExtensionApi, *args: apsw.SQLiteValue) -> bytes:
    # float64s packed: table average length, tf of phrase skip, tf of phrase skip+1, ... (``skip``, the optional
    # argument, leaves out the candidate-selecting phrases of ranked()); read by bm25() as one matrix. The
    # row's length is not read here: FTS5's column_size() runs a docsize lookup per row (a third of the cost),
    # the query joins the docsize row instead. The reader is made once per query (aux data).
    made = api.aux_data
    if made is None:
        skip = int(args[0]) if args else 0  # type: ignore[arg-type]
        made = api.aux_data = _stats_reader(api.column_total_size(0) / (api.row_count or 1),
                                            range(skip, api.phrase_count))
    return made(api)


def _stats_reader(average: float, phrases: range) -> Callable[[apsw.FTS5ExtensionApi], bytes]:
    """The per-row body of :func:`_term_stats` for these phrases; the usual one or two phrases are spelled
    out (a comprehension per row costs as much as the FTS5 calls)."""
    pack = struct.Struct(f"={1 + len(phrases)}d").pack
    if len(phrases) == 1:
        (a,) = phrases
        return lambda api: pack(average, len(api.phrase_column_offsets(a, 0)))
    if len(phrases) == 2:
        a, b = phrases
        return lambda api: pack(average, len(api.phrase_column_offsets(a, 0)), len(api.phrase_column_offsets(b, 0)))
    return lambda api: pack(average, *[len(api.phrase_column_offsets(i, 0)) for i in phrases])


def ranked(conn: apsw.Connection, tokens: Sequence[str], lo: int, hi: int,
           documents: int, cache: CountsView | None = None) -> list[tuple[int, float]]:
    """The documents with rowid in ``[lo, hi]`` (one partition) that hold any of ``tokens``, by BM25, best
    first, as ``(rowid, score)``.

    Cost is bounded by :data:`CANDIDATE_BUDGET` documents scored: the partition's documents holding any
    of the words are read first (at most one past the budget; within it, they are all candidates), then,
    past the budget, each word's document count (capped), and only the documents holding one of
    the rarest words (within the budget) are candidates; the other words still count in their score
    (their frequency is read from the same rows, their document frequency counted exactly). Documents
    holding only common words are then left out: their BM25 is low (a common word's idf is small) and
    they would not make the top ``k``. When even the rarest word is in
    more documents than the budget, the newest of them are the candidates. Counts are taken from
    ``cache`` where it has them.
    """
    sql = f"SELECT {STATS_COLUMNS} FROM {STATS_FROM} WHERE memories_fts MATCH ? AND f.rowid BETWEEN ? AND ?"
    union = ("tf", tuple(tokens), lo, hi, CANDIDATE_BUDGET + 1)  # _count()'s key for the same capped count
    known = cache.get(union) if cache is not None else None
    if known is None or known <= CANDIDATE_BUDGET:
        # the documents holding any of the words, read at most one past the budget: within it (the usual
        # case), they are all candidates, with no separate count before; past it, the count is remembered
        rowids, stats = _rows(conn, f"{sql} LIMIT {CANDIDATE_BUDGET + 1}", (0, match_expression(tokens), lo, hi))
        if cache is not None:
            cache.put(union, len(rowids))
        if len(rowids) <= CANDIDATE_BUDGET:
            return bm25((rowids, stats), documents)
    capped = {t: _count(conn, [t], lo, hi, CANDIDATE_BUDGET + 1, cache) for t in tokens}
    words = sorted((t for t in tokens if capped[t]), key=lambda t: (capped[t], t))
    if not words:
        return []
    chosen, total = [words[0]], capped[words[0]]
    for word in words[1:]:
        if total + capped[word] > CANDIDATE_BUDGET:
            break
        chosen.append(word)
        total += capped[word]
    if len(chosen) == len(words):
        return bm25(_rows(conn, sql, (0, match_expression(words), lo, hi)), documents)
    expression = f"({match_expression(chosen)}) AND ({match_expression(words)})"
    if total > CANDIDATE_BUDGET:
        sql += f" ORDER BY f.rowid DESC LIMIT {CANDIDATE_BUDGET}"
    frequencies = [capped[w] if capped[w] <= CANDIDATE_BUDGET else _count(conn, [w], lo, hi, None, cache)
                   for w in words]
    return bm25(_rows(conn, sql, (len(chosen), expression, lo, hi)), documents, frequencies)


def _count(conn: apsw.Connection, tokens: Sequence[str], lo: int, hi: int, cap: int | None,
           cache: CountsView | None = None) -> int:
    """Documents of the partition holding any of ``tokens``; at most ``cap`` are counted."""
    key = ("tf", tuple(tokens), lo, hi, cap)
    known = cache.get(key) if cache is not None else None
    if known is not None:
        return known
    inner = ("SELECT 1 FROM memories_fts WHERE memories_fts MATCH ? AND rowid BETWEEN ? AND ?"
             + (f" LIMIT {int(cap)}" if cap is not None else ""))
    row = conn.execute(f"SELECT count(*) FROM ({inner})", (match_expression(tokens), lo, hi)).fetchone()
    count = int(row[0]) if row else 0
    if cache is not None:
        cache.put(key, count)
    return count


def _rows(conn: apsw.Connection, sql: str, params: tuple[Any, ...]) -> tuple[list[int], np.ndarray]:
    """The rowids and the stats matrix of a query selecting :data:`STATS_COLUMNS`: per row the table's
    average length, the row's length, then :func:`_term_stats`' term frequencies."""
    rows = conn.execute(sql, params).fetchall()
    if not rows:
        return [], np.empty((0, 2))
    found = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float64).reshape(len(rows), -1)  # type: ignore[misc]
    stats = np.empty((len(rows), found.shape[1] + 1))
    stats[:, 0] = found[:, 0]
    stats[:, 2:] = found[:, 1:]
    sizes = b"".join(r[2] for r in rows)  # type: ignore[misc]
    # each docsize row is one varint (one column): one byte each while documents are under 128 tokens
    if len(sizes) == len(rows):
        stats[:, 1] = np.frombuffer(sizes, dtype=np.uint8)
    else:
        stats[:, 1] = [_varint(r[2]) for r in rows]  # type: ignore[arg-type]
    return [int(r[0]) for r in rows], stats  # type: ignore[arg-type]


def _varint(data: bytes) -> int:
    """SQLite's variable-length integer (big-endian 7-bit groups, a 9th byte of 8), as FTS5 stores sizes."""
    value = 0
    for byte in data[:8]:
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value
    return (value << 8) | data[8]


def bm25(candidates: tuple[Sequence[int], np.ndarray], documents: int,
         frequencies: Sequence[int] | None = None) -> list[tuple[int, float]]:
    """BM25 of each candidate given ``documents`` in the partition; best first (ties: lower rowid first).

    ``candidates`` are the rowids and their stats matrix: per row the table's average length, the row's
    length and a term frequency per scored phrase of the query. Without ``frequencies`` (the document
    frequency of each scored phrase), every document of the partition that holds a query word is a
    candidate, so counting candidates per phrase gives the exact in-partition document frequency. Computed
    over the whole matrix at once (numpy): no Python per candidate.
    """
    rowids, stats = candidates
    if not len(rowids):
        return []
    average = float(stats[0, 0]) or 1.0
    tf = stats[:, 2:]
    df = np.count_nonzero(tf, axis=0) if frequencies is None else np.asarray(frequencies, dtype=np.int64)
    n = max(documents, len(rowids), int(df.max(initial=0)))
    norm = K1 * (1.0 - B + B * stats[:, 1] / average)
    scores = np.zeros(len(rowids))
    for i, d in enumerate(df.tolist()):  # phrase by phrase, in order: the same sums as one row at a time
        idf = math.log(1.0 + (n - d + 0.5) / (d + 0.5))
        scores += idf * tf[:, i] * (K1 + 1.0) / (tf[:, i] + norm)
    ids = np.asarray(rowids, dtype=np.int64)
    order = np.lexsort((ids, -scores))
    return list(zip(ids[order].tolist(), scores[order].tolist(), strict=True))
