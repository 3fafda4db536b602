"""Crash safety of whole writers: ``bench/crash.py`` SIGKILLs Python API writers (threads and processes)
and a gateway subprocess at random moments and checks the store after each kill; this runs its short
setting (one round per mode) and checks that its checker catches each kind of damage it claims to.

The longer setting (``python bench/crash.py --kills 200``) is documented in the script and SECURITY.md.
(``tests/test_store_sqlite_crash.py`` kills a store-level writer; this goes through Memory and HTTP.)
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import apsw
import pytest
import sqlite_vec

from mindgate.memory._memory import AsyncMemory, Memory
from mindgate.memory.stores._sqlite import SQLiteStore

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str) -> ModuleType:
    """A bench script imported as a module (its helpers are what the tests check)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(name) or importlib.util.module_from_spec(spec)
    if name not in sys.modules:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


crash = load_bench("crash")


@pytest.mark.slow
def test_sigkilled_api_and_gateway_writers_lose_no_acknowledged_write() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "crash.py"), "--kills", "4", "--min-delay", "0.5",
                           "--max-delay", "2.0", "--seed", "7", "--json"],
                          capture_output=True, text=True, timeout=600)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and summary["violations"] == [], summary["violations"][:10]
    assert summary["kills_survived"] == summary["rounds"] == 4
    assert set(summary["by_mode"]) == {"threads", "procs", "gateway", "mixed"}
    assert summary["processes_killed"] == 1 + 2 + 1 + 3
    assert summary["writes_verified"] > 0 and summary["final_rows"] >= summary["writes_verified"]


# -- the checker catches what it claims to --------------------------------------------------------------


@pytest.fixture
def written(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """A store with 6 acknowledged two-message adds (12 rows) for users u0/u1, and their journal."""
    db = tmp_path / "checked.db"
    memory = Memory(AsyncMemory(embedder=crash.HashEmbedder(), store=SQLiteStore(db)))
    outcomes = crash.Outcomes()
    for i in range(6):
        user = f"u{i % 2}"
        texts = [f"fact {i}.{k} about {crash.WORDS[i]}" for k in range(2)]
        result = memory.add([{"role": "user", "content": t} for t in texts], user_id=user, infer=False)
        outcomes.acked[f"tag{i}"] = (user, [(r["id"], r["memory"]) for r in result["results"]])
    memory.close()
    yield db, outcomes


THIRD = "(SELECT rowid FROM memories ORDER BY rowid LIMIT 1 OFFSET 2)"


def _sql(db: Path, *statements: str) -> None:
    conn = apsw.Connection(str(db))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _forget(tag: str) -> Callable[[Path, Any], None]:
    def tamper(db: Path, outcomes: Any) -> None:
        del outcomes.acked[tag]
    return tamper


def _lose_row(db: Path, outcomes: Any) -> None:
    memory_id = outcomes.acked["tag0"][1][0][0]
    rowid = f"(SELECT rowid FROM memories WHERE id = '{memory_id}')"
    _sql(db, f"DELETE FROM memories_vec_1 WHERE rowid = {rowid}", f"DELETE FROM memories_fts WHERE rowid = {rowid}",
         f"DELETE FROM history WHERE memory_id = '{memory_id}'", f"DELETE FROM memories WHERE id = '{memory_id}'")


def _half_in_flight(db: Path, outcomes: Any) -> None:
    user, items = outcomes.acked.pop("tag1")
    outcomes.in_flight["tag1"] = (user, [text for _, text in items])
    memory_id = items[0][0]
    rowid = f"(SELECT rowid FROM memories WHERE id = '{memory_id}')"
    _sql(db, f"DELETE FROM memories_vec_1 WHERE rowid = {rowid}", f"DELETE FROM memories_fts WHERE rowid = {rowid}",
         f"DELETE FROM history WHERE memory_id = '{memory_id}'", f"DELETE FROM memories WHERE id = '{memory_id}'")


def _failed_but_stored(db: Path, outcomes: Any) -> None:
    user, items = outcomes.acked.pop("tag2")
    outcomes.failed["tag2"] = (user, [text for _, text in items])


def _corrupt_pages(db: Path, outcomes: Any) -> None:
    data = bytearray(db.read_bytes())
    for offset in range(4096, len(data), 4096):  # every page header but the first page's
        data[offset:offset + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))


@pytest.mark.parametrize(("tamper", "words"), [
    (lambda db, o: _sql(db, "INSERT INTO memories_vec_1 (rowid, part, embedding) "
                            "SELECT 9999, 'user:u0', embedding FROM memories_vec_1 LIMIT 1"), "orphans [9999]"),
    (lambda db, o: _sql(db, f"DELETE FROM memories_fts WHERE rowid = {THIRD}"), "full-text rows differ"),
    (lambda db, o: _sql(db, "DELETE FROM history WHERE seq = 5"), "has history"),
    (lambda db, o: _sql(db, f"UPDATE memories SET deleted_at = '2024-01-01' WHERE rowid = {THIRD}"),
     "vector rows differ"),
    (lambda db, o: _sql(db, "CREATE VIRTUAL TABLE memories_vec_7 USING vec0 (embedding FLOAT[4])"),
     "outside vector_spaces"),
    (_lose_row, "acknowledged write tag0"),
    (_half_in_flight, "partly stored"),
    (_failed_but_stored, "returned an error but is stored"),
    (_forget("tag3"), "nobody acknowledged"),
    (_corrupt_pages, "store"),
], ids=["orphan-vector", "missing-fts", "missing-history", "deleted-keeps-vector", "stray-vector-table", "lost-ack",
        "torn-transaction", "failed-but-stored", "phantom-row", "corrupt-pages"])
def test_the_checker_reports_each_kind_of_damage(written: tuple[Path, Any], tamper: Callable[[Path, Any], None],
                                                 words: str) -> None:
    db, outcomes = written
    _, clean = crash.check_store(db, {}, outcomes, crash.HashEmbedder())
    assert clean.violations == [] and clean.acked_rows == 12 and clean.live_rows == 12
    tamper(db, outcomes)
    _, damaged = crash.check_store(db, {}, outcomes, None)
    assert damaged.violations, "the damage went unnoticed"
    text = " | ".join(damaged.violations)
    assert words in text, text


def test_rows_seen_earlier_must_survive_later_rounds(written: tuple[Path, Any]) -> None:
    db, outcomes = written
    seen, _ = crash.check_store(db, {}, outcomes, None)
    memory_id = next(iter(seen))
    changed = {**seen, memory_id: (seen[memory_id][0], "a different text")}
    _, result = crash.check_store(db, changed, crash.Outcomes(), None)
    assert any("seen by an earlier check" in v for v in result.violations)


def test_journal_lines_torn_by_a_kill_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text('READY\nB ["t1", "u0", ["a"]]\nA ["t1", "u0", [["id1", "a"]]]\nB ["t2", "u0", ["b"]]\nA ["t2", "u')
    outcomes = crash.Outcomes()
    outcomes.merge_lines(crash.read_journal(path))
    assert outcomes.ready == 1 and list(outcomes.acked) == ["t1"] and outcomes.in_flight == {"t2": ("u0", ["b"])}
