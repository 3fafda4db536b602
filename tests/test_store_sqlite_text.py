"""The SQLite store's full-text ranking: BM25 with statistics taken inside the partition."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mindgate.errors import NotFoundError
from mindgate.memory.stores import _sqlite_text
from mindgate.memory.stores._base import AddChange, DeleteChange, MemoryRecord, Scope, UpdateChange, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.memory.stores._sqlite_text import K1, B, bm25
from mindgate.providers._base import EmbedderIdentity

ALICE, BOB = Scope(user_id="alice"), Scope(user_id="bob")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "text.db")
    s.open(EmbedderIdentity("test", "text", 4))
    yield s
    s.close()


def put(store: SQLiteStore, scope: Scope, *texts: str) -> None:
    rng = np.random.default_rng(len(texts))
    store.apply([AddChange(MemoryRecord(id=f"{scope.partition}-{i}-{t}", memory=t, hash=content_hash(t),
                                        scope=scope), rng.standard_normal(4).astype(np.float32))
                 for i, t in enumerate(texts)])


def ranked(store: SQLiteStore, scope: Scope, query: str) -> list[str]:
    return [r.memory for r, _ in store.text_search(scope, query, 10)]


def test_document_frequency_is_counted_inside_the_partition(store: SQLiteStore) -> None:
    put(store, ALICE, "coffee every morning", "coffee with oat milk", "coffee at work", "green tea at night")
    put(store, BOB, *[f"tea number {i}" for i in range(50)], "coffee once")
    # globally "tea" is common and "coffee" rare; among alice's memories it is the other way round
    assert ranked(store, ALICE, "coffee tea")[0] == "green tea at night"
    assert ranked(store, BOB, "coffee tea")[0] == "coffee once"


def test_the_partition_size_counts_live_memories_only(store: SQLiteStore, tmp_path: Path) -> None:
    # idf uses the partition's document count: deleted and replaced memories must not count
    put(store, ALICE, "kiwi smoothie recipe", "walk by the river", "old note one", "old note two", "draft text")
    put(store, BOB, *[f"bob note {i}" for i in range(8)])
    store.apply([DeleteChange(f"{ALICE.partition}-{i}-old note {w}", ALICE) for i, w in ((2, "one"), (3, "two"))])
    store.apply([UpdateChange(f"{ALICE.partition}-4-draft text", ALICE, "a kiwi tart", np.ones(4, np.float32))])
    fresh = SQLiteStore(tmp_path / "fresh.db")
    fresh.open(EmbedderIdentity("test", "text", 4))
    put(fresh, ALICE, "kiwi smoothie recipe", "walk by the river", "a kiwi tart")
    put(fresh, BOB, *[f"bob note {i}" for i in range(8)])
    got = {r.memory: s for r, s in store.text_search(ALICE, "kiwi river", 10)}
    want = {r.memory: s for r, s in fresh.text_search(ALICE, "kiwi river", 10)}
    fresh.close()
    assert got.keys() == want.keys() == {"kiwi smoothie recipe", "walk by the river", "a kiwi tart"}
    assert all(got[m] == pytest.approx(want[m], rel=1e-9) for m in want)


def test_term_frequency_and_length_normalisation(store: SQLiteStore) -> None:
    put(store, ALICE, "jazz jazz jazz club", "jazz club tonight", "a very long sentence that mentions jazz only once "
        "among many other words about the weather and the city", "nothing relevant here")
    order = ranked(store, ALICE, "jazz")
    assert order[0] == "jazz jazz jazz club" and order[1] == "jazz club tonight" and len(order) == 3


def test_stemming_and_diacritics(store: SQLiteStore) -> None:
    put(store, ALICE, "He runs every day", "Café au lait in Zürich", "nothing here")
    assert ranked(store, ALICE, "running") == ["He runs every day"]
    assert ranked(store, ALICE, "cafe zurich") == ["Café au lait in Zürich"]


def test_bm25_matches_the_formula() -> None:
    # two phrases; rowids, and per row: average length, length, tf0, tf1
    candidates = ([1, 2, 3], np.array([[5.0, 4, 2, 0], [5.0, 8, 1, 1], [5.0, 5, 0, 1]]))
    n = 10
    idf = [math.log(1 + (n - df + 0.5) / (df + 0.5)) for df in (2, 2)]

    def score(length: int, tfs: list[int]) -> float:
        norm = K1 * (1 - B + B * length / 5.0)
        return sum(w * tf * (K1 + 1) / (tf + norm) for w, tf in zip(idf, tfs, strict=True) if tf)

    expected = sorted([(1, score(4, [2, 0])), (2, score(8, [1, 1])), (3, score(5, [0, 1]))],
                      key=lambda item: -item[1])
    got = bm25(candidates, n)
    assert [r for r, _ in got] == [r for r, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        assert a == pytest.approx(b)
    assert bm25(([], np.empty((0, 2))), 5) == []


def test_document_lengths_come_from_fts5s_docsize_rows_at_any_length(store: SQLiteStore) -> None:
    # lengths of 128 tokens and more take two or more varint bytes in the docsize row
    lengths = [3, 127, 128, 300, 17000]
    put(store, ALICE, *[" ".join(["kiwi"] + [f"w{i}" for i in range(n - 1)]) for n in lengths])
    with store._db.read() as conn:
        conn.register_fts5_function("column_size", lambda api, *args: api.column_size(0))
        want = conn.execute("SELECT rowid, column_size(memories_fts) FROM memories_fts WHERE memories_fts MATCH "
                            "'kiwi' ORDER BY rowid").fetchall()
        rowids, stats = _sqlite_text._rows(conn, f"SELECT {_sqlite_text.STATS_COLUMNS} FROM {_sqlite_text.STATS_FROM} "
                                           "WHERE memories_fts MATCH 'kiwi' ORDER BY f.rowid", (0,))
    assert [n for _, n in want] == lengths
    assert list(zip(rowids, stats[:, 1].tolist(), strict=True)) == [(r, float(n)) for r, n in want]
    assert stats[:, 2].tolist() == [1.0] * len(lengths)  # the term frequency of "kiwi"
    assert _sqlite_text._varint(bytes([0x81, 0x00])) == 128 and _sqlite_text._varint(bytes([0x7F])) == 127


def test_a_partition_created_in_a_rolled_back_batch_is_not_remembered(tmp_path: Path) -> None:
    first, second = SQLiteStore(tmp_path / "shared.db"), SQLiteStore(tmp_path / "shared.db")
    for s in (first, second):
        s.open(EmbedderIdentity("test", "text", 4))
    p, q = Scope(user_id="p"), Scope(user_id="q")
    with pytest.raises(NotFoundError):
        first.apply([AddChange(MemoryRecord(id="x", memory="xylophone", hash=content_hash("xylophone"), scope=p),
                               np.ones(4, np.float32)), DeleteChange("missing", p)])
    put(second, q, "yodel")  # may reuse the rowid slot the rolled-back batch had taken
    put(first, p, "zither")
    for s in (first, second):
        assert ranked(s, p, "zither") == ["zither"] and ranked(s, q, "yodel") == ["yodel"]
        assert ranked(s, q, "zither") == [] and ranked(s, p, "yodel xylophone") == []
    first.close()
    second.close()
