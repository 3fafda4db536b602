"""Crash safety of the SQLite store: a writer process SIGKILLed at random points, again and again.

The child announces each batch before ``apply`` (``BEGIN <json>``) and acknowledges it after the commit
(``ACK``). After every kill the file must pass ``PRAGMA integrity_check``, hold every acknowledged change
exactly once, hold the one unacknowledged batch entirely or not at all, and have exactly one vector and
one full-text row per live record (no orphans) and a history row per change.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
import sqlite_vec

from mindgate.memory.stores._base import Scope
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

IDENT = EmbedderIdentity("test", "crash", 16)

CHILD = r"""
import json, random, sys, uuid
import numpy as np
from mindgate.memory.stores._base import AddChange, DeleteChange, MemoryRecord, Scope, UpdateChange, content_hash
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import EmbedderIdentity

path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
store = SQLiteStore(path)
store.open(EmbedderIdentity("test", "crash", 16))
live = {}  # id -> user of records this child added and saw acknowledged
print("READY", flush=True)

def vector():
    return np.random.default_rng(rng.getrandbits(32)).standard_normal(16).astype(np.float32)

while True:
    batch, plan, touched = [], [], set()
    for _ in range(rng.randint(100, 400) if rng.random() < 0.3 else rng.randint(1, 12)):
        choice = rng.random()
        candidates = [i for i in live if i not in touched]
        if choice < 0.2 and candidates:
            mid = rng.choice(candidates)
            text = f"updated {uuid.uuid4().hex}"
            batch.append(UpdateChange(mid, Scope(user_id=live[mid]), text, vector()))
            plan.append(["UPDATE", mid, live[mid], text])
            touched.add(mid)
        elif choice < 0.3 and candidates:
            mid = rng.choice(candidates)
            batch.append(DeleteChange(mid, Scope(user_id=live[mid])))
            plan.append(["DELETE", mid, live[mid], None])
            touched.add(mid)
        else:
            mid, user, text = uuid.uuid4().hex, f"u{rng.randint(0, 4)}", f"fact {uuid.uuid4().hex}"
            rec = MemoryRecord(id=mid, memory=text, hash=content_hash(text), scope=Scope(user_id=user),
                               metadata={"n": rng.randint(0, 9)})
            batch.append(AddChange(rec, vector()))
            plan.append(["ADD", mid, user, text])
            touched.add(mid)
    print("BEGIN " + json.dumps(plan), flush=True)
    store.apply(batch)
    print("ACK", flush=True)
    for op, mid, user, _ in plan:
        if op == "DELETE":
            live.pop(mid)
        else:
            live[mid] = user
"""


def run_and_kill(path: Path, seed: int, delay: float) -> list[str]:
    """Start a writer, SIGKILL it ``delay`` seconds after it is ready; returns its stdout lines."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(seed)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("READY"):
                ready.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    if not ready.wait(60):
        proc.kill()
        pytest.fail(f"writer did not start: {proc.stderr.read() if proc.stderr else ''}")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    thread.join(30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return lines


class Expected:
    """What the file must hold: the state after every acknowledged batch, plus one optional batch."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}  # id -> {"user", "text", "live", "ops"}

    def apply(self, plan: list[list[Any]], state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out = {k: dict(v) for k, v in state.items()}
        for op, mid, user, text in plan:
            if op == "ADD":
                out[mid] = {"user": user, "text": text, "live": True, "ops": ["ADD"]}
            elif op == "UPDATE":
                out[mid]["text"] = text
                out[mid]["ops"] = [*out[mid]["ops"], "UPDATE"]
            else:
                out[mid]["live"] = False
                out[mid]["ops"] = [*out[mid]["ops"], "DELETE"]
        return out

    def consume(self, lines: list[str]) -> tuple[dict[str, dict[str, Any]], int]:
        """Fold acknowledged batches in; returns the state if the in-flight batch committed, and #acks."""
        pending: list[list[Any]] | None = None
        acks = 0
        for line in lines:
            if line.startswith("BEGIN "):
                pending = json.loads(line[6:])
            elif line == "ACK":
                assert pending is not None
                self.state = self.apply(pending, self.state)
                pending, acks = None, acks + 1
        return (self.apply(pending, self.state) if pending else self.state), acks


def snapshot(path: Path) -> dict[str, dict[str, Any]]:
    """The file's content, read with plain SQL, after checking integrity and orphans."""
    conn = apsw.Connection(str(path))
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        [(gen,)] = conn.execute("SELECT gen FROM vector_spaces WHERE state = 'active'").fetchall()
        live = {r[0] for r in conn.execute("SELECT rowid FROM memories WHERE deleted_at IS NULL")}
        vec_rows = [r[0] for r in conn.execute(f"SELECT rowid FROM memories_vec_{gen}")]
        fts_rows = [r[0] for r in conn.execute("SELECT rowid FROM memories_fts")]
        assert sorted(vec_rows) == sorted(live), "vectors and live records differ"
        assert sorted(fts_rows) == sorted(live), "full-text rows and live records differ"
        hist: dict[str, list[str]] = {}
        for mid, event in conn.execute("SELECT memory_id, event FROM history ORDER BY seq"):
            hist.setdefault(mid, []).append(event)
        out = {}
        for mid, user, text, deleted in conn.execute("SELECT id, user_id, memory, deleted_at FROM memories"):
            out[mid] = {"user": user, "text": text, "live": deleted is None, "ops": hist.get(mid, [])}
        assert set(hist) <= set(out), "history rows without a memory"
        texts = [v["text"] for v in out.values()]
        assert len(texts) == len(set(texts)), "a write is stored twice"
        return out
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkilled_writers_never_lose_acknowledged_writes_or_leave_orphans(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    expected = Expected()
    rng = random.Random(20240517)
    total_acks = 0
    for round_ in range(8):
        lines = run_and_kill(path, seed=round_, delay=rng.uniform(0.05, 0.8))
        if_committed, acks = expected.consume(lines)
        total_acks += acks
        found = snapshot(path)
        assert found in (expected.state, if_committed), f"round {round_}: the file matches neither outcome"
        expected.state = found  # the in-flight batch is now either in or out, as the file says
        store = SQLiteStore(path)
        try:
            store.open(IDENT)
            for user in {v["user"] for v in found.values()}:
                live_texts = sorted(v["text"] for v in found.values() if v["live"] and v["user"] == user)
                assert sorted(r.memory for r in store.list(Scope(user_id=user), limit=100000)) == live_texts
        finally:
            store.close()
    assert total_acks >= 6, "the writers were killed before doing any work"
