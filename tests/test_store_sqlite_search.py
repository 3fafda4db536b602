"""The SQLite store's bounded-cost searches give the exhaustive answers.

* Vector search of a partition of >= 2,048 vectors runs in numpy over an in-memory copy: same hits and
  similarities as sqlite-vec's KNN, and fresh after writes by this store or by another connection.
* Text search scores at most CANDIDATE_BUDGET documents: the words in many documents do not make every
  document a candidate, and the scores of the documents found equal exhaustive BM25.
* The counts text search caches (documents per partition and per word) follow writes by this store and
  by another connection: the scores after a write are those of a store opened afresh.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from mindgate.memory.stores import _sqlite_text
from mindgate.memory.stores._base import AddChange, DeleteChange, MemoryRecord, Scope, UpdateChange, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

IDENTITY = EmbedderIdentity("test", "random", 16)
ALICE = Scope(user_id="alice")


def _records(texts: list[str], vectors: np.ndarray, scope: Scope = ALICE) -> list[AddChange]:
    return [AddChange(MemoryRecord(id=str(uuid.uuid4()), memory=t, hash=content_hash(t), scope=scope), v)
            for t, v in zip(texts, vectors, strict=True)]


def _exact(store: SQLiteStore, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
    # a metadata filter that holds for every record sends the search through sqlite-vec's KNN
    from mindgate.memory._filters import parse_filters

    hits = store.vector_search(ALICE, vector, k, parse_filters({"user_id": {"ne": "nobody"}}))
    return [(r.id, s) for r, s in hits]


@pytest.fixture
def big(tmp_path: Path) -> SQLiteStore:
    rng = np.random.default_rng(5)
    store = SQLiteStore(tmp_path / "big.db")
    store.open(IDENTITY)
    vectors = rng.standard_normal((2100, 16)).astype(np.float32)
    store.apply(_records([f"memory {i}" for i in range(2100)], vectors))
    store.apply(_records(["bob's"], vectors[:1], Scope(user_id="bob")))
    yield store
    store.close()


def test_a_large_partition_is_searched_in_memory_with_sqlite_vecs_answers(big: SQLiteStore) -> None:
    rng = np.random.default_rng(6)
    for _ in range(5):
        query = rng.standard_normal(16).astype(np.float32)
        found = [(r.id, s) for r, s in big.vector_search(ALICE, query, 20)]
        exact = _exact(big, query, 20)
        assert [i for i, _ in found] == [i for i, _ in exact]
        assert np.allclose([s for _, s in found], [s for _, s in exact], atol=1e-5)
    assert len(big._vectors._entries) == 1  # the copy served these searches


def test_the_in_memory_copy_follows_writes_here_and_from_another_connection(big: SQLiteStore,
                                                                            tmp_path: Path) -> None:
    target = np.ones(16, dtype=np.float32)
    big.vector_search(ALICE, target, 5)  # builds the copy
    [added] = big.apply(_records(["the new nearest"], target[None, :]))
    assert big.vector_search(ALICE, target, 1)[0][0].id == added.id
    big.apply([UpdateChange(added.id, ALICE, "moved away", -target)])
    assert big.vector_search(ALICE, target, 1)[0][0].id != added.id
    other = SQLiteStore(tmp_path / "big.db")  # another connection (as another process would be)
    other.open(IDENTITY)
    try:
        [again] = other.apply(_records(["from elsewhere"], target[None, :]))
        assert big.vector_search(ALICE, target, 1)[0][0].id == again.id
        other.apply([DeleteChange(again.id, ALICE)])
        assert all(r.id != again.id for r, _ in big.vector_search(ALICE, target, 50))
    finally:
        other.close()
    assert [r.memory for r, _ in big.vector_search(Scope(user_id="bob"), target, 5)] == ["bob's"]  # small: vec0


def test_text_search_scores_a_bounded_set_with_exhaustive_bm25(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "text.db")
    store.open(IDENTITY)
    n = _sqlite_text.CANDIDATE_BUDGET * 3
    texts = [f"the weather report number {i} said rain" + (" about a red bicycle" if i % 100 == 7 else "")
             for i in range(n)]
    store.apply(_records(texts, np.random.default_rng(1).standard_normal((n, 16)).astype(np.float32)))
    try:
        hits = store.text_search(ALICE, "what did the report say about my bicycle?", 10)
        # "report" is in every document: the rare word picks the candidates, "report" still scores them
        assert {r.memory for r, _ in hits} == {t for t in texts if "bicycle" in t}
        with store._db.read() as conn:
            tokens = ["report", "bicycle"]
            lo, hi = conn.execute("SELECT min(rowid), max(rowid) FROM memories").fetchone()
            bounded = dict(_sqlite_text.ranked(conn, tokens, lo, hi, n))
            full = dict(_sqlite_text.bm25(_sqlite_text._rows(
                conn, f"SELECT rowid, {_sqlite_text.STATS_FUNCTION}(memories_fts, 0) FROM memories_fts "
                      "WHERE memories_fts MATCH ?", (_sqlite_text.match_expression(tokens),)), n))
        assert len(bounded) <= _sqlite_text.CANDIDATE_BUDGET < len(full)
        assert all(bounded[r] == pytest.approx(full[r]) for r in bounded)
        assert set(bounded) == set(sorted(full, key=lambda r: -full[r])[:len(bounded)])
        # a question of function words only is still searched
        assert store.text_search(ALICE, "what was it about?", 3)
    finally:
        store.close()


def test_cached_text_counts_follow_writes_here_and_from_another_connection(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = SQLiteStore(tmp_path / "counts.db")
    store.open(IDENTITY)
    other = SQLiteStore(tmp_path / "counts.db")  # another connection (as another process would be)
    other.open(IDENTITY)
    words = " ".join(f"w{i}" for i in range(12))  # more words than MAX_SEARCH_TERMS: pruned by counts

    def scores(s: SQLiteStore) -> dict[str, float]:
        return {r.memory: score for r, score in s.text_search(ALICE, f"kiwi mango {words}", 50)}

    def fresh() -> dict[str, float]:
        again = SQLiteStore(tmp_path / "counts.db")
        try:
            return scores(again)
        finally:
            again.close()

    try:
        store.apply(_records(["kiwi one", "mango two", "kiwi mango three", "w1 w2"], rng.standard_normal((4, 16))))
        first = scores(store)
        assert first == fresh() and scores(store) == first  # the second search reads the cached counts
        [added] = store.apply(_records(["kiwi four w3"], rng.standard_normal((1, 16))))
        assert scores(store) == fresh() != first
        other.apply(_records(["mango five", "w4 w5 w6"], rng.standard_normal((2, 16))))
        assert scores(store) == fresh() and "mango five" in scores(store)
        other.apply([DeleteChange(added.id, ALICE)])
        assert scores(store) == fresh() and "kiwi four w3" not in scores(store)
    finally:
        other.close()
        store.close()
