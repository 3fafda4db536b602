"""The SQLite store's search caches are per partition, and correct across connections (as across processes).

* A write to one partition, by this store or by another connection, keeps every other partition's
  in-memory vector copy and text counts: no copy is read again, no count is looked up again.
* A write to a partition by another connection (an add, an update, a delete) is seen by this store's next
  vector and text search of it: the new memory is found, the changed or deleted one is not, with the
  answers of a store opened afresh.
* reset(), here or by another connection, leaves nothing cached that a search could return.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mindgate.memory.stores import _sqlite_vectors
from mindgate.memory.stores._base import AddChange, DeleteChange, MemoryRecord, Scope, UpdateChange, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

IDENTITY = EmbedderIdentity("test", "random", 16)
A, B = Scope(user_id="a"), Scope(user_id="b")
N = _sqlite_vectors.MIN_VECTORS + 44  # large enough to be copied


def _adds(texts: list[str], vectors: np.ndarray, scope: Scope) -> list[AddChange]:
    return [AddChange(MemoryRecord(id=str(uuid.uuid4()), memory=t, hash=content_hash(t), scope=scope), v)
            for t, v in zip(texts, vectors, strict=True)]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two store objects on one file, each with its own connections (as two processes would have)."""
    rng = np.random.default_rng(11)
    here, other = SQLiteStore(tmp_path / "s.db"), SQLiteStore(tmp_path / "s.db")
    here.open(IDENTITY)
    other.open(IDENTITY)
    for scope in (A, B):
        here.apply(_adds([f"{scope.user_id} note {i} about fruit" for i in range(N)],
                         rng.standard_normal((N, 16)).astype(np.float32), scope))
    yield here, other
    other.close()
    here.close()


def _search(store: SQLiteStore, scope: Scope, vector: np.ndarray, query: str) -> tuple[list[str], list[str]]:
    return ([r.memory for r, _ in store.vector_search(scope, vector, 5)],
            [r.memory for r, _ in store.text_search(scope, query, 5)])


def _fresh(path: Path, scope: Scope, vector: np.ndarray, query: str) -> tuple[list[str], list[str]]:
    again = SQLiteStore(path)
    try:
        return _search(again, scope, vector, query)
    finally:
        again.close()


def test_a_write_to_one_partition_keeps_the_others_caches(stores: tuple[SQLiteStore, SQLiteStore]) -> None:
    here, other = stores
    rng = np.random.default_rng(12)
    query = rng.standard_normal(16).astype(np.float32)
    words = "fruit note 7 " + " ".join(f"w{i}" for i in range(12))  # more words than are searched: counted
    for _ in range(2):  # the second search copies B's vectors and finds its counts cached
        want = _search(here, B, query, words)
    assert here._vectors.loads == 1 and B.partition in here._vectors._entries
    misses = here._counts.misses
    assert _search(here, B, query, words) == want and here._counts.misses == misses
    here.apply(_adds(["a new one about fruit"], query[None, :], A))  # written here
    other.apply(_adds(["another about fruit"], query[None, :], A))  # written by another connection
    other.apply([DeleteChange(here.list(A, limit=1)[0].id, A)])
    for _ in range(2):
        assert _search(here, B, query, words) == want
    assert here._vectors.loads == 1 and here._counts.misses == misses  # nothing of B was read again
    assert _search(here, A, query, words)[0][0] in ("a new one about fruit", "another about fruit")


def test_writes_by_another_connection_are_seen_by_the_next_search(stores: tuple[SQLiteStore, SQLiteStore],
                                                                  tmp_path: Path) -> None:
    here, other = stores
    target = np.ones(16, dtype=np.float32)
    query = "kiwi"

    def check() -> tuple[list[str], list[str]]:
        for _ in range(3):  # the first search after the write (vec0, counts read), then from a new copy
            found = _search(here, B, target, query)
            assert found == _fresh(tmp_path / "s.db", B, target, query)
        return found

    check()
    loads = here._vectors.loads
    [added] = other.apply(_adds(["a kiwi, nearest"], target[None, :], B))
    vectors, texts = check()
    assert vectors[0] == "a kiwi, nearest" and texts == ["a kiwi, nearest"]
    assert here._vectors.loads == loads + 1  # B was copied again, after its change
    other.apply([UpdateChange(added.id, B, "a melon, far away", -target)])
    vectors, texts = check()
    assert "a kiwi, nearest" not in vectors and "a melon, far away" not in vectors and texts == []
    assert here.text_search(B, "melon", 5)[0][0].memory == "a melon, far away"
    other.apply([DeleteChange(added.id, B)])
    assert [r.memory for r, _ in here.text_search(B, "melon", 5)] == []
    vectors, _ = check()
    assert all(r.id != added.id for r, _ in here.vector_search(B, -target, N + 1))
    assert len(here.vector_search(B, -target, N + 1)) == N


def test_reset_here_or_elsewhere_leaves_nothing_cached_to_find(stores: tuple[SQLiteStore, SQLiteStore]) -> None:
    here, other = stores
    query = np.ones(16, dtype=np.float32)
    for store in (here, other):
        for _ in range(2):
            assert _search(store, B, query, "fruit") != ([], [])
        assert store.vector_cache()["held"] > 0
    here.reset()
    assert here.vector_cache()["held"] == 0
    assert _search(here, B, query, "fruit") == _search(other, B, query, "fruit") == ([], [])
    rng = np.random.default_rng(13)
    other.apply(_adds([f"again {i} fruit" for i in range(N)], rng.standard_normal((N, 16)).astype(np.float32), B))
    for _ in range(2):
        assert _search(here, B, query, "fruit") == _search(other, B, query, "fruit") != ([], [])
    other.reset()  # another connection's reset: this store's cached copy and counts of B are stale
    assert _search(here, B, query, "fruit") == ([], [])
    other.apply(_adds([f"third {i} fruit" for i in range(N)], rng.standard_normal((N, 16)).astype(np.float32), B))
    for _ in range(2):
        _search(here, B, query, "fruit")
    other.apply(_adds(["the nearest fruit kiwi"], query[None, :], B))  # versions still move after a reset
    found = _search(here, B, query, "kiwi")
    assert found == _search(other, B, query, "kiwi") and found[0][0] == "the nearest fruit kiwi"
    assert found[1] == ["the nearest fruit kiwi"]
