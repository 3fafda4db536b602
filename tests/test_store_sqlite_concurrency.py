"""SQLite store under concurrency: WAL, the busy timeout, and many threads and processes writing at once.

Writers adding the same facts must serialise (BEGIN IMMEDIATE + busy timeout), never surface "database
is locked", and never store a fact twice in one scope: exactly one writer gets ADD for each fact, every
other writer gets NONE with that record's id.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest

from mindgate.errors import StoreError
from mindgate.memory.stores._base import AddChange, MemoryRecord, Scope, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "concurrency", 8)
SCOPES = [Scope(user_id="alice"), Scope(user_id="alice", agent_id="bot"), Scope(agent_id="bot")]
FACTS = [f"fact number {i} about the weather" for i in range(60)]

WORKER = r"""
import json, random, sys, time, uuid
import numpy as np
from mindgate.memory.stores._base import AddChange, MemoryRecord, Scope, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

path, seed, tasks, start_at = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
store = SQLiteStore(path)
store.open(EmbedderIdentity("test", "concurrency", 8))
time.sleep(max(0.0, start_at - time.time()))  # start together with the other writers
rng = random.Random(seed)
rng.shuffle(tasks)
out = []
while tasks:
    n = rng.randint(1, 6)
    batch, tasks = tasks[:n], tasks[n:]
    changes = [AddChange(MemoryRecord(id=uuid.uuid4().hex, memory=t, hash=content_hash(t), scope=Scope(**s)),
                         np.ones(8, np.float32) + i) for i, (s, t) in enumerate(batch)]
    for (s, t), r in zip(batch, store.apply(changes)):
        out.append([json.dumps(s, sort_keys=True), t, r.id, r.event])
print(json.dumps(out))
"""


def tasks() -> list[tuple[dict[str, str], str]]:
    return [(s.as_dict(), f) for s in SCOPES for f in FACTS]


def add_all(store: SQLiteStore, seed: int, start_at: float) -> list[list[str]]:
    """Add every (scope, fact) in a random order and random batch sizes; returns [scope, text, id, event]."""
    time.sleep(max(0.0, start_at - time.time()))
    rng = random.Random(seed)
    todo = tasks()
    rng.shuffle(todo)
    out = []
    while todo:
        n = rng.randint(1, 6)
        batch, todo = todo[:n], todo[n:]
        changes = [AddChange(MemoryRecord(id=f"t{seed}-{len(out) + i}", memory=t, hash=content_hash(t),
                                          scope=Scope(**s)), np.ones(8, np.float32) + i)
                   for i, (s, t) in enumerate(batch)]
        for (s, t), r in zip(batch, store.apply(changes), strict=True):
            out.append([json.dumps(s, sort_keys=True), t, r.id, r.event])
        store.vector_search(Scope(**batch[0][0]), np.ones(8, np.float32), 5)  # readers interleave too
    return out


@pytest.mark.slow
def test_threads_and_processes_adding_the_same_facts_store_each_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SQLiteStore(path)
    store.open(IDENT)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start_at = time.time() + 5
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(seed), json.dumps(tasks()),
                               str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for seed in range(3)]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def thread_main(seed: int) -> None:
        try:
            results.extend(add_all(store, seed, start_at))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(100 + i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr
        results.extend(json.loads(stdout))
    assert not errors, errors
    assert len(results) == 7 * len(SCOPES) * len(FACTS)
    adds = Counter((scope, text) for scope, text, _, event in results if event == "ADD")
    assert set(adds.values()) == {1} and len(adds) == len(SCOPES) * len(FACTS)
    winner = {(scope, text): mid for scope, text, mid, event in results if event == "ADD"}
    for scope, text, mid, event in results:
        assert event in ("ADD", "NONE") and mid == winner[(scope, text)]
    for s in SCOPES:
        stored = [r.memory for r in store.list(s, limit=1000) if r.scope == s]
        assert sorted(stored) == sorted(FACTS)
    store.close()


def _holder(path: Path) -> apsw.Connection:
    """A second connection that takes the write lock and keeps it."""
    conn = apsw.Connection(str(path))
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _change(text: str) -> AddChange:
    return AddChange(MemoryRecord(id=text, memory=text, hash=content_hash(text), scope=Scope(user_id="u")),
                     np.ones(8, np.float32))


def test_wal_mode_lets_readers_read_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "wal.db", busy_timeout_ms=100)
    store.open(IDENT)
    store.apply([_change("before")])
    holder = _holder(store.path)
    try:
        assert holder.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        holder.execute("UPDATE memories SET memory = 'uncommitted'")
        started = time.monotonic()
        assert [r.memory for r in store.list(Scope(user_id="u"))] == ["before"]
        assert time.monotonic() - started < 0.1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_a_writer_waits_for_the_lock_instead_of_failing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "wait.db", busy_timeout_ms=10000)
    store.open(IDENT)
    holder = _holder(store.path)
    release = threading.Timer(0.4, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        [result] = store.apply([_change("waited")])
    finally:
        release.join()
        holder.close()
    assert result.event == "ADD" and time.monotonic() - started >= 0.35
    store.close()


def test_a_lock_held_past_the_busy_timeout_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "locked.db", busy_timeout_ms=200)
    store.open(IDENT)
    holder = _holder(store.path)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match="another process holds the write lock") as err:
            store.apply([_change("blocked")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - started >= 0.19
    assert str(store.path) in str(err.value) and "busy_timeout_ms" in str(err.value)
    assert "locked" in str(err.value) and not isinstance(err.value, apsw.Error)
    store.apply([_change("after")])  # the store is usable once the lock is gone
    assert store.count(Scope(user_id="u")) == 1
    store.close()


def test_one_store_object_serves_many_threads(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "threads.db")
    store.open(IDENT)
    errors: list[Any] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.apply([_change(f"thread {n} fact {i}")])
                assert store.count(Scope(user_id="u")) >= i + 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert store.count(Scope(user_id="u")) == 120
    store.close()
