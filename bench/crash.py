"""Crash safety: writers SIGKILLed at random points never lose an acknowledged memory or leave debris.

Each round starts writer processes on ONE SQLite file, lets them write, SIGKILLs each at its own random
moment, and then checks the file (a restart: the next round opens it again and keeps writing). Rounds
cycle through four modes:

* ``threads``: one process, ``--threads`` threads calling ``Memory.add(..., infer=False)``;
* ``procs``: ``--procs`` processes, one writing thread each;
* ``gateway``: a gateway subprocess (uvicorn, loopback) and ``--threads`` client threads here sending
  ``POST /v1/memories``;
* ``mixed``: the gateway and the writer processes at once, on the same file.

Every add carries 1-3 messages with unique texts, so one add is one multi-row transaction. Writers
journal ``B`` (about to add), ``A`` (acknowledged, with the ids returned) or ``E`` (an error was
returned) before/after each call; the gateway's clients journal the same around each HTTP request.

After every round the file must show (:func:`check_store`):

* ``PRAGMA integrity_check`` is ``ok`` and the FTS5 index passes its own ``integrity-check``;
* every acknowledged add is present exactly once (its ids, texts and user), and every row the previous
  checks saw is still there, unchanged;
* an add in flight at the kill is present entirely or not at all (atomicity); an add that returned an
  error is absent; no row exists that nobody tried to write;
* the live rows, the vectors of the active ``vec0`` space and the FTS5 rows are the same rowid sets (no
  orphan vectors or full-text rows, none missing), and no vector table exists outside ``vector_spaces``;
* history: every memory has exactly one ``ADD`` row, holding its text; no history row points nowhere;
* the reopened store answers: per-user counts through the Memory API equal the raw counts, and a
  full-text search finds a sample of acknowledged memories.

Embedder: by default a deterministic hashing embedder (:class:`HashEmbedder`, 384 dims, SHA-256 of the
text). The store only sees vectors, so the crash behaviour under test does not depend on which model made
them, and a writer then starts in about a second instead of loading torch and MiniLM in every process
(which would make 200 kills take an hour). ``--embedder minilm`` uses the real MiniLM instead.

Usage::

    python bench/crash.py                      # CI-sized: 8 rounds (two of each mode)
    python bench/crash.py --kills 200          # the longer setting (~16 min on 2 cores)
    python bench/crash.py --kills 4 --json     # JSON only (the CI test runs this)

Options: ``--procs 2 --threads 3 --min-delay 0.05 --max-delay 1.5 --embedder hash|minilm --seed 1 --dir PATH --keep``.
Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mindgate.providers._base import Embedder, Vector

SRC = Path(__file__).resolve().parents[1] / "src"
USERS = [f"user{i}" for i in range(6)]
WORDS = ["tea", "cello", "Porto", "goats", "chess", "jazz", "Berlin", "peanuts", "yoga", "sushi", "Tokyo", "oat"]
MODES = ("threads", "procs", "gateway", "mixed")


class HashEmbedder(Embedder):
    """Deterministic 384-dim vectors from SHA-256 of the text (no model; the same text, the same vector)."""

    provider = "bench"

    def __init__(self, dims: int = 384) -> None:
        super().__init__("sha256-hash", batch_size=256)
        self.width = dims

    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        out = np.empty((len(texts), self.width), dtype=np.float32)
        for row, text in enumerate(texts):
            raw = b"".join(hashlib.sha256(f"{i}:{text}".encode()).digest()
                           for i in range(self.width // 32 + 1))
            vec = np.frombuffer(raw[:self.width], dtype=np.uint8).astype(np.float32) - 127.5
            out[row] = vec / np.linalg.norm(vec)
        return out


def make_embedder(kind: str) -> Embedder:
    if kind == "minilm":
        import torch

        from mindgate.providers.local import SentenceTransformerEmbedder

        torch.set_num_threads(1)
        return SentenceTransformerEmbedder()
    return HashEmbedder()


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the journal ---------------------------------------------------------------------------------------


class Journal:
    """Append-only lines, one ``write()`` each (O_APPEND), so a SIGKILL never leaves a torn line except
    possibly the last, which :func:`read_journal` ignores."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, kind: str, payload: Any) -> None:
        os.write(self.fd, f"{kind} {json.dumps(payload)}\n".encode())


@dataclass
class Outcomes:
    """What the writers of one round said: adds acknowledged, failed, or in flight when killed."""

    acked: dict[str, tuple[str, list[tuple[str, str]]]] = field(default_factory=dict)  # tag -> (user, [(id, text)])
    failed: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # tag -> (user, texts)
    in_flight: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    ready: int = 0

    def merge_lines(self, lines: list[str]) -> None:
        begun: dict[str, tuple[str, list[str]]] = {}
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "READY":
                self.ready += 1
                continue
            tag, user, data = json.loads(rest)
            if kind == "B":
                begun[tag] = (user, data)
            elif kind == "A":
                begun.pop(tag)
                self.acked[tag] = (user, [(i, t) for i, t in data])
            elif kind == "E":
                self.failed[tag] = begun.pop(tag)
        self.in_flight.update(begun)


def read_journal(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]  # the last piece is "" or a torn line


def texts_for(tag: str, rng: random.Random) -> list[str]:
    return [f"{tag}.{k} {rng.choice(WORDS)} {rng.choice(WORDS)} {rng.getrandbits(32):08x}"
            for k in range(rng.randint(1, 3))]


# -- children ------------------------------------------------------------------------------------------


def writer_child(db: str, journal_path: str, name: str, threads: int, seed: int, embedder_kind: str) -> None:
    """Write through the Python API from ``threads`` threads until killed."""
    from mindgate.memory._memory import AsyncMemory, Memory
    from mindgate.memory.stores._sqlite import SQLiteStore

    journal = Journal(Path(journal_path))
    memory = Memory(AsyncMemory(embedder=make_embedder(embedder_kind), store=SQLiteStore(db)))
    memory.count(user_id=USERS[0])  # opens the store (identity, migrations) before READY
    os.write(journal.fd, b"READY\n")

    def loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        n = 0
        while True:
            tag, user = f"{name}.t{index}.{n}", rng.choice(USERS)
            texts = texts_for(tag, rng)
            journal.write("B", [tag, user, texts])
            try:
                result = memory.add([{"role": "user", "content": t} for t in texts], user_id=user, infer=False)
            except Exception as exc:
                journal.write("E", [tag, user, f"{type(exc).__name__}: {exc}"])
            else:
                journal.write("A", [tag, user, [[r["id"], r["memory"]] for r in result["results"]]])
            n += 1

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def gateway_child(db: str, port: int, embedder_kind: str) -> None:
    """Serve the gateway on 127.0.0.1:``port`` over the store at ``db`` until killed."""
    import uvicorn

    from mindgate.config import MindgateConfig
    from mindgate.gateway._app import create_app
    from mindgate.memory._memory import AsyncMemory
    from mindgate.memory.stores._sqlite import SQLiteStore
    from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient

    embedder = make_embedder(embedder_kind)
    memory = AsyncMemory(embedder=embedder, store=SQLiteStore(db))
    unused_chat = OpenAICompatChatModel(OpenAICompatClient("http://127.0.0.1:9/v1"), "unused")
    app = create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}), chat=unused_chat, memory=memory,
                     embedder=embedder)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)).run()


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdout=out,
                                stderr=subprocess.STDOUT, env=child_env(), start_new_session=True)


# -- gateway clients -----------------------------------------------------------------------------------


def gateway_clients(port: int, journal_path: Path, threads: int, seed: int, stop: threading.Event,
                    name: str) -> list[threading.Thread]:
    import httpx

    journal = Journal(journal_path)

    def loop(index: int) -> None:
        rng = random.Random(seed * 1000 + 500 + index)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            n = 0
            while not stop.is_set():
                tag, user = f"{name}.c{index}.{n}", rng.choice(USERS)
                texts = texts_for(tag, rng)
                journal.write("B", [tag, user, texts])
                try:
                    response = http.post("/v1/memories", json={
                        "messages": [{"role": "user", "content": t} for t in texts], "user_id": user,
                        "infer": False})
                except httpx.HTTPError:
                    return  # the gateway died with this request in flight: its outcome is unknown
                if response.status_code == 200:
                    journal.write("A", [tag, user, [[r["id"], r["memory"]] for r in response.json()["results"]]])
                else:
                    journal.write("E", [tag, user, f"HTTP {response.status_code}: {response.text[:200]}"])
                n += 1

    return [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the gateway did not start")


def wait_ready(journals: list[Path], count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(read_journal(j).count("READY") for j in journals) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the writers did not start")
        time.sleep(0.02)


# -- one round -----------------------------------------------------------------------------------------


@dataclass
class RoundResult:
    mode: str
    killed: int
    acked_adds: int
    acked_rows: int
    in_flight_committed: int
    in_flight_absent: int
    failed: int
    live_rows: int
    violations: list[str]


def run_round(number: int, mode: str, workdir: Path, db: Path, opts: argparse.Namespace,
              rng: random.Random) -> Outcomes:
    """Start the mode's writers, SIGKILL each at its own random moment, return what they journaled."""
    procs: list[subprocess.Popen[bytes]] = []
    journals: list[Path] = []
    log = workdir / "children.log"
    writers = {"threads": [opts.threads], "procs": [1] * opts.procs, "gateway": [],
               "mixed": [1] * opts.procs}[mode]
    for index, threads in enumerate(writers):
        journal = workdir / f"r{number}-w{index}.journal"
        journals.append(journal)
        procs.append(spawn(["--child", "writer", str(db), str(journal), f"r{number}w{index}", str(threads),
                            str(rng.getrandbits(31)), opts.embedder], log))
    stop = threading.Event()
    clients: list[threading.Thread] = []
    if mode in ("gateway", "mixed"):
        port = free_port()
        gateway = spawn(["--child", "gateway", str(db), str(port), opts.embedder], log)
        procs.append(gateway)
        wait_healthy(port, gateway)
        journal = workdir / f"r{number}-gw.journal"
        journals.append(journal)
        clients = gateway_clients(port, journal, opts.threads, rng.getrandbits(31), stop, f"r{number}g")
    wait_ready([j for j in journals if "-w" in j.name], len(writers))
    for client in clients:
        client.start()
    start = time.monotonic()
    for proc, at in sorted(((p, rng.uniform(opts.min_delay, opts.max_delay)) for p in procs), key=lambda x: x[1]):
        time.sleep(max(0.0, at - (time.monotonic() - start)))
        os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL, f"a child exited by itself ({proc.returncode}); see {log}"
    stop.set()
    for client in clients:
        client.join(60)
    outcomes = Outcomes()
    for journal in journals:
        outcomes.merge_lines(read_journal(journal))
    return outcomes


# -- the checks ----------------------------------------------------------------------------------------


def _connect(db: Path) -> Any:
    import apsw
    import sqlite_vec

    conn = apsw.Connection(str(db))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    return conn


Rows = list[tuple[Any, ...]]
History = dict[str, list[tuple[str, str | None]]]


def store_problems(db: Path) -> tuple[list[str], Rows, History]:
    """What is structurally wrong with a memory store file, whatever was written to it: integrity (SQLite's
    and FTS5's), one active vector space and no stray vector tables, live rows == vector rows == full-text
    rows (no orphans, none missing, none doubled), every memory's history starting with ADD and ending with
    its state (DELETE when deleted, else its current text), no history for unknown memories.

    Returns (problems, rows of ``(rowid, id, user_id, memory, deleted_at)``, history by memory id)."""
    bad: list[str] = []
    history: History = {}
    try:
        conn = _connect(db)
    except Exception as exc:
        return [f"the store cannot be opened: {exc}"], [], history
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            bad.append(f"integrity_check: {integrity[:5]}")
        try:
            with conn:
                conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')")
        except Exception as exc:
            bad.append(f"FTS5 integrity-check failed: {exc}")
        spaces = conn.execute("SELECT gen, state FROM vector_spaces").fetchall()
        active = [gen for gen, state in spaces if state == "active"]
        if len(active) > 1 or (not active and spaces):
            bad.append(f"expected one active vector space, found {spaces}")
        known = {f"memories_vec_{gen}" for gen, _ in spaces}
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'memories_vec_[0-9]*' "
            "AND name NOT GLOB 'memories_vec_*_*'")}
        if tables - known:
            bad.append(f"vector tables outside vector_spaces: {sorted(tables - known)}")
        rows: Rows = conn.execute("SELECT rowid, id, user_id, memory, deleted_at FROM memories").fetchall()
        live = Counter(r[0] for r in rows if r[4] is None)
        vectors = Counter(r[0] for r in conn.execute(f"SELECT rowid FROM memories_vec_{active[0]}")) if active \
            else Counter()
        fulltext = Counter(r[0] for r in conn.execute("SELECT rowid FROM memories_fts"))
        for name, found in (("vector", vectors), ("full-text", fulltext)):
            if found != live:
                orphans = sorted(set(found) - set(live))[:5]
                missing = sorted(set(live) - set(found))[:5]
                doubled = sorted(k for k, v in found.items() if v > 1)[:5]
                bad.append(f"{name} rows differ from live rows: orphans {orphans}, missing {missing}, "
                           f"doubled {doubled}")
        for memory_id, event, new in conn.execute("SELECT memory_id, event, new_memory FROM history ORDER BY seq"):
            history.setdefault(memory_id, []).append((event, new))
    except Exception as exc:
        return [*bad, f"the store cannot be read: {exc}"], [], history
    finally:
        conn.close()
    for _rowid, memory_id, _user, text, deleted in rows:
        events = history.get(memory_id, [])
        ends_right = bool(events) and (events[-1][0] == "DELETE" if deleted
                                       else events[-1] in (("ADD", text), ("UPDATE", text)))
        if not ends_right or events[0][0] != "ADD":
            bad.append(f"memory {memory_id} ({text!r}, deleted {deleted}) has history {events[:4]}")
    unknown = set(history) - {r[1] for r in rows}
    if unknown:
        bad.append(f"history rows for unknown memories: {sorted(unknown)[:5]}")
    return bad, rows, history


def check_store(db: Path, previous: dict[str, tuple[str, str]], outcomes: Outcomes,
                embedder: Embedder | None = None) -> tuple[dict[str, tuple[str, str]], RoundResult]:
    """Check the file after a crash against what the writers journaled (see the module docstring).

    ``previous`` is id -> (user, text) of every row the last check saw. Returns this check's rows and the
    round's figures, whose ``violations`` list says what is wrong (empty when all is well)."""
    bad, rows, history = store_problems(db)
    current = {r[1]: (r[2], r[3]) for r in rows}
    if any(r[4] is not None for r in rows):
        bad.append("a memory was deleted, but the writers only add")
    for memory_id, (_user, text) in current.items():
        if history.get(memory_id) != [("ADD", text)]:
            bad.append(f"memory {memory_id} ({text!r}) has history {history.get(memory_id)}, not one ADD")
    text_count = Counter(text for _, text in current.values())
    doubled = [t for t, c in text_count.items() if c > 1]
    if doubled:
        bad.append(f"texts stored more than once: {doubled[:5]}")

    for memory_id, row in previous.items():
        if current.get(memory_id) != row:
            bad.append(f"memory {memory_id} seen by an earlier check is now {current.get(memory_id)}, was {row}")
    by_text = {text: (memory_id, user) for memory_id, (user, text) in current.items()}
    expected: set[str] = set(previous)
    acked_rows = 0
    for tag, (user, items) in outcomes.acked.items():
        for memory_id, text in items:
            acked_rows += 1
            expected.add(memory_id)
            if current.get(memory_id) != (user, text):
                bad.append(f"acknowledged write {tag} ({memory_id}, {text!r}) is {current.get(memory_id)}")
    committed = absent = 0
    for tag, (user, texts) in outcomes.in_flight.items():
        present = [t for t in texts if t in by_text]
        if present and len(present) != len(texts):
            bad.append(f"in-flight add {tag} is partly stored: {len(present)} of {len(texts)} rows")
        if present:
            committed += 1
        else:
            absent += 1
        for text in present:
            memory_id, owner = by_text[text]
            expected.add(memory_id)
            if owner != user:
                bad.append(f"in-flight add {tag} stored under {owner}, not {user}")
    for tag, (_user, texts) in outcomes.failed.items():
        if isinstance(texts, list) and any(t in by_text for t in texts):
            bad.append(f"add {tag} returned an error but is stored")
    unexpected = set(current) - expected
    if unexpected:
        bad.append(f"rows nobody acknowledged or had in flight: {sorted(unexpected)[:5]}")

    if embedder is not None and current:
        bad.extend(_check_through_api(db, current, embedder))
    result = RoundResult(mode="", killed=0, acked_adds=len(outcomes.acked), acked_rows=acked_rows,
                         in_flight_committed=committed, in_flight_absent=absent, failed=len(outcomes.failed),
                         live_rows=len(current), violations=bad)
    return current, result


def _check_through_api(db: Path, current: dict[str, tuple[str, str]], embedder: Embedder) -> list[str]:
    """The reopened store, through the Memory API: per-user counts and a text search for a few rows."""
    from mindgate.memory._memory import AsyncMemory, Memory
    from mindgate.memory.stores._sqlite import SQLiteStore

    bad = []
    memory = Memory(AsyncMemory(embedder=embedder, store=SQLiteStore(db)))
    try:
        per_user = Counter(user for user, _ in current.values())
        for user, count in per_user.items():
            if memory.count(user_id=user) != count:
                bad.append(f"Memory.count(user_id={user!r}) disagrees with the table ({count})")
        sample = random.Random(len(current)).sample(sorted(current.items()), min(5, len(current)))
        for memory_id, (user, text) in sample:
            found = memory.search(text, user_id=user, limit=5, mode="text")["results"]
            if memory_id not in [f["id"] for f in found]:
                bad.append(f"a text search for memory {memory_id} did not find it")
    finally:
        memory.close()
    return bad


# -- main ----------------------------------------------------------------------------------------------


def run(opts: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(opts.dir) if opts.dir else Path(tempfile.mkdtemp(prefix="mindgate-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "crash.db"
    rng = random.Random(opts.seed)
    embedder = make_embedder(opts.embedder)
    rows: dict[str, tuple[str, str]] = {}
    results: list[RoundResult] = []
    started = time.monotonic()
    try:
        for number in range(opts.kills):
            mode = MODES[number % len(MODES)]
            outcomes = run_round(number, mode, workdir, db, opts, rng)
            rows, result = check_store(db, rows, outcomes, embedder)
            result.mode = mode
            result.killed = {"threads": 1, "procs": opts.procs, "gateway": 1, "mixed": opts.procs + 1}[mode]
            results.append(result)
            if not opts.json:
                state = "ok" if not result.violations else "FAILED: " + "; ".join(result.violations[:3])
                print(f"round {number + 1:>3}/{opts.kills} {mode:<8} acked {result.acked_adds:>4} adds, "
                      f"in flight {result.in_flight_committed}+{result.in_flight_absent}, "
                      f"{result.live_rows} rows: {state}", file=sys.stderr, flush=True)
    finally:
        if not opts.keep and not opts.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return summarize(results, opts, time.monotonic() - started)


def summarize(results: list[RoundResult], opts: argparse.Namespace, seconds: float) -> dict[str, Any]:
    by_mode: dict[str, dict[str, int]] = {}
    for r in results:
        row = by_mode.setdefault(r.mode, Counter())
        row.update(rounds=1, processes_killed=r.killed, acked_adds=r.acked_adds, acked_rows=r.acked_rows,
                   in_flight_committed=r.in_flight_committed, in_flight_absent=r.in_flight_absent,
                   errors_returned=r.failed, rounds_failed=int(bool(r.violations)))
    violations = [f"round {i + 1} ({r.mode}): {v}" for i, r in enumerate(results) for v in r.violations]
    return {
        "benchmark": "crash", "embedder": opts.embedder, "procs": opts.procs, "threads": opts.threads,
        "kill_window_s": [opts.min_delay, opts.max_delay], "seed": opts.seed, "seconds": round(seconds, 1),
        "kills_survived": sum(1 for r in results if not r.violations),
        "rounds": len(results),
        "processes_killed": sum(r.killed for r in results),
        "writes_verified": sum(r.acked_rows for r in results),
        "final_rows": results[-1].live_rows if results else 0,
        "by_mode": {k: dict(v) for k, v in by_mode.items()},
        "violations": violations,
    }


def print_table(summary: dict[str, Any]) -> None:
    cols = ["rounds", "processes_killed", "acked_adds", "acked_rows", "in_flight_committed", "in_flight_absent",
            "errors_returned", "rounds_failed"]
    print(f"{'mode':<9}" + "".join(f"{c:>21}" for c in cols))
    for mode, row in summary["by_mode"].items():
        print(f"{mode:<9}" + "".join(f"{row.get(c, 0):>21}" for c in cols))
    print(f"\nkills survived: {summary['kills_survived']}/{summary['rounds']} rounds "
          f"({summary['processes_killed']} processes SIGKILLed); writes verified: {summary['writes_verified']}; "
          f"rows in the store at the end: {summary['final_rows']}; {summary['seconds']} s")
    for line in summary["violations"][:20]:
        print("VIOLATION:", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8, help="rounds; each SIGKILLs every writer process")
    parser.add_argument("--procs", type=int, default=2, help="writer processes in procs/mixed rounds")
    parser.add_argument("--threads", type=int, default=3, help="threads per writer (threads mode), gateway clients")
    parser.add_argument("--min-delay", type=float, default=0.05, help="earliest kill, seconds after start")
    parser.add_argument("--max-delay", type=float, default=1.5, help="latest kill, seconds after start")
    parser.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", help="work directory (kept); default a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        role, *args = opts.child
        if role == "writer":
            writer_child(args[0], args[1], args[2], int(args[3]), int(args[4]), args[5])
        else:
            gateway_child(args[0], int(args[1]), args[2])
        return 0
    summary = run(opts)
    if not opts.json:
        print_table(summary)
    print(json.dumps(summary))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
