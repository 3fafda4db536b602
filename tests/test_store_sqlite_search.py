"""The SQLite store's bounded-cost searches give the exhaustive answers.

* Vector search of a partition of >= MIN_VECTORS vectors searched twice since the last write runs in numpy
  over an in-memory copy: the same hits and bit-identical similarities as sqlite-vec's KNN, fresh after
  writes by this store or by another connection, within the configured budget (vector_cache_mb). This
  store's own writes patch the copy (no reload) when no other writer came between.
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

from mindgate.config import MindgateConfig, SQLiteStoreConfig
from mindgate.errors import InvalidRequestError
from mindgate.memory.stores import _sqlite_text, _sqlite_vectors, create_store
from mindgate.memory.stores._base import AddChange, DeleteChange, MemoryRecord, Scope, UpdateChange, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

IDENTITY = EmbedderIdentity("test", "random", 16)
ALICE = Scope(user_id="alice")


def _records(texts: list[str], vectors: np.ndarray, scope: Scope = ALICE) -> list[AddChange]:
    return [AddChange(MemoryRecord(id=str(uuid.uuid4()), memory=t, hash=content_hash(t), scope=scope), v)
            for t, v in zip(texts, vectors, strict=True)]


def _exact(store: SQLiteStore, vector: np.ndarray, k: int, scope: Scope = ALICE) -> list[tuple[str, float]]:
    # a metadata filter that holds for every record sends the search through sqlite-vec's KNN
    from mindgate.memory._filters import parse_filters

    hits = store.vector_search(scope, vector, k, parse_filters({"user_id": {"ne": "nobody"}}))
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
    big.vector_search(ALICE, rng.standard_normal(16).astype(np.float32), 5)
    assert not big._vectors._entries  # searched once since the last write: sqlite-vec answered
    for k in (1, 20, 3000):
        for scale in (1.0, 1e-3, 50.0):  # the query's length changes the float32 sums, not the answer
            query = rng.standard_normal(16).astype(np.float32) * np.float32(scale)
            found = [(r.id, s) for r, s in big.vector_search(ALICE, query, k)]
            assert found == _exact(big, query, k)  # the same hits, order and similarities, bit for bit
    assert len(big._vectors._entries) == 1  # the copy served these searches


def test_threads_searching_one_partition_at_once_share_one_copy(big: SQLiteStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    queries = [rng.standard_normal(16).astype(np.float32) for _ in range(24)]
    want = [_exact(big, q, 10) for q in queries]
    big.vector_search(ALICE, queries[0], 10)  # the first search: sqlite-vec; the next ones copy, at once
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: [(r.id, s) for r, s in big.vector_search(ALICE, q, 10)], queries))
    assert got == want
    [(_, copy)] = big._vectors._entries.values()
    assert big._vectors.bytes_used == copy.nbytes  # counted once, however many threads loaded it


def test_only_partitions_of_min_vectors_or_more_are_copied_within_the_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    n = _sqlite_vectors.MIN_VECTORS
    store = SQLiteStore(tmp_path / "budget.db", vector_cache_mb=1)
    store.open(EmbedderIdentity("test", "wide", 256))
    scopes = [Scope(user_id=f"u{i}") for i in range(3)]
    try:
        for scope in scopes:  # 400 rows of 1024 + 8 + 4 bytes: a 1 MiB budget holds two partitions
            store.apply(_records([f"{scope.user_id} {i}" for i in range(400)],
                                 rng.standard_normal((400, 256)).astype(np.float32), scope))
        store.apply(_records([f"small {i}" for i in range(n - 1)], rng.standard_normal((n - 1, 256)),
                             Scope(user_id="small")))
        query = rng.standard_normal(256).astype(np.float32)
        for scope in [*scopes, Scope(user_id="small")]:
            for _ in range(2):
                assert len(store.vector_search(scope, query, 5)) == 5
        cache = store._vectors
        assert cache.bytes_used <= 2**20
        copied = [key for key, (_, entry) in cache._entries.items() if entry is not _sqlite_vectors.SMALL]
        assert copied == [scopes[0].partition, scopes[1].partition]  # the third did not fit: vec0 searched it
        assert cache._full
        for scope in scopes:  # copies of this size are read into populated mappings (_zeros): same answers
            assert [(r.id, s) for r, s in store.vector_search(scope, query, 30)] == _exact(store, query, 30, scope)
    finally:
        store.close()
    off = SQLiteStore(tmp_path / "budget.db", vector_cache_mb=0)
    try:
        for _ in range(3):
            off.vector_search(scopes[0], query, 5)
        assert not off._vectors._entries
    finally:
        off.close()


def test_the_cache_budget_is_validated_and_defaults_to_a_share_of_memory(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidRequestError, match="vector_cache_mb"):
        SQLiteStore(tmp_path / "x.db", vector_cache_mb=-1)
    with pytest.raises(ValueError, match="vector_cache_mb"):
        SQLiteStoreConfig(vector_cache_mb=-5)
    low, high = _sqlite_vectors.DEFAULT_BOUNDS_MB
    assert low <= _sqlite_vectors.default_cache_mb() <= high
    limit = tmp_path / "memory.max"  # a container allowed 1 GiB: 1/8 of it is below the floor
    limit.write_text(f"{2**30}\n")
    monkeypatch.setattr(_sqlite_vectors, "CGROUP_LIMITS", (str(tmp_path / "absent"), str(limit)))
    assert _sqlite_vectors.default_cache_mb() == low
    limit.write_text(f"{24 * 2**30}\n")  # the machine's memory counts where it is lower than the limit
    assert _sqlite_vectors.default_cache_mb() <= 24 * 1024 // 8
    limit.write_text("max\n")  # cgroup v2: no limit
    assert low <= _sqlite_vectors.default_cache_mb() <= high
    assert SQLiteStoreConfig().vector_cache_mb is None  # the default: sized from the machine's memory
    config = MindgateConfig.model_validate({"vector_store": {"provider": "sqlite", "config": {
        "path": str(tmp_path / "configured.db"), "vector_cache_mb": 64}}})
    store = create_store(config.vector_store)
    try:
        assert store.vector_cache() == {"budget": 64.0, "held": 0.0}  # type: ignore[attr-defined]
    finally:
        store.close()


def test_the_in_memory_copy_follows_writes_here_and_from_another_connection(big: SQLiteStore,
                                                                            tmp_path: Path) -> None:
    target = np.ones(16, dtype=np.float32)
    big.vector_search(ALICE, target, 5)
    big.vector_search(ALICE, target, 5)  # the second search builds the copy
    assert big._vectors._entries
    [added] = big.apply(_records(["the new nearest"], target[None, :]))
    for _ in range(3):  # after the write: from the copy, patched by it
        assert big.vector_search(ALICE, target, 1)[0][0].id == added.id
    assert big._vectors._entries
    big.apply([UpdateChange(added.id, ALICE, "moved away", -target)])
    for _ in range(3):
        assert big.vector_search(ALICE, target, 1)[0][0].id != added.id
    other = SQLiteStore(tmp_path / "big.db")  # another connection (as another process would be)
    other.open(IDENTITY)
    try:
        [again] = other.apply(_records(["from elsewhere"], target[None, :]))
        for _ in range(3):
            assert big.vector_search(ALICE, target, 1)[0][0].id == again.id
        other.apply([DeleteChange(again.id, ALICE)])
        for _ in range(3):  # the copy of a partition with a hole (a deleted vector)
            assert all(r.id != again.id for r, _ in big.vector_search(ALICE, target, 50))
        assert big._vectors._entries
    finally:
        other.close()
    assert [r.memory for r, _ in big.vector_search(Scope(user_id="bob"), target, 5)] == ["bob's"]  # small: vec0


def test_this_stores_own_writes_patch_the_copy_instead_of_reading_it_again(big: SQLiteStore,
                                                                          tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    queries = rng.standard_normal((4, 16)).astype(np.float32)

    def same_as_vec0() -> None:
        for query in queries:
            for k in (1, 10, 3000):
                assert [(r.id, s) for r, s in big.vector_search(ALICE, query, k)] == _exact(big, query, k)

    big.vector_search(ALICE, queries[0], 5)
    big.vector_search(ALICE, queries[0], 5)
    loads = big._vectors.loads
    # a search then a write, turn after turn (a chat with memory): every search after the first two is
    # served by the copy, patched by each write, with sqlite-vec's answers bit for bit
    for turn in range(70):  # more adds than the copy's free rows: it grows
        said = rng.standard_normal((1, 16)).astype(np.float32)
        [added] = big.apply(_records([f"turn {turn}"], said))
        assert big.vector_search(ALICE, said[0], 1)[0][0].id == added.id
    same_as_vec0()
    ids = [r.id for r in big.list(ALICE, limit=3)]
    big.apply([UpdateChange(ids[0], ALICE, "moved", -queries[1]), DeleteChange(ids[1], ALICE)])
    [late] = big.apply(_records(["added then deleted in one write"], queries[2][None, :] * 3))
    big.apply([*_records(["kept"], queries[3][None, :] * 2), DeleteChange(late.id, ALICE)])
    same_as_vec0()
    assert big._vectors.loads == loads  # nothing was read again
    assert big.vector_search(ALICE, -queries[1], 1)[0][0].id == ids[0]

    # a vector whose float32 length underflows to zero (vec0 scores it NaN): its order is left to vec0
    [tiny] = big.apply(_records(["a vanishing vector"], np.full((1, 16), 1e-30, dtype=np.float32)))
    assert not big._vectors.holds(ALICE.partition)
    for _ in range(2):
        big.vector_search(ALICE, queries[0], 5)
    assert big._vectors.loads == loads + 1 and not big._vectors.holds(ALICE.partition)  # read, not copyable
    big.apply([DeleteChange(tiny.id, ALICE)])
    other = SQLiteStore(tmp_path / "big.db")
    other.open(IDENTITY)
    try:
        for _ in range(2):
            big.vector_search(ALICE, queries[0], 5)
        assert big._vectors.holds(ALICE.partition)
        [between] = other.apply(_records(["from elsewhere"], queries[0][None, :]))
        big.apply(_records(["here, after another writer"], queries[1][None, :]))  # not patchable: dropped
        assert not big._vectors.holds(ALICE.partition)
        assert big.vector_search(ALICE, queries[0], 1)[0][0].id == between.id
        same_as_vec0()
    finally:
        other.close()


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
                conn, f"SELECT {_sqlite_text.STATS_COLUMNS} FROM {_sqlite_text.STATS_FROM} WHERE memories_fts MATCH ?",
                (0, _sqlite_text.match_expression(tokens))), n))
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
