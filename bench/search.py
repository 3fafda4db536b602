"""search() latency in one big scope of real conversation turns, with a per-stage breakdown.

The scope holds ``--memories`` (default 5,000) turns of the LongMemEval S file (shared/data/longmemeval):
every non-empty turn of the first questions' haystacks, de-duplicated, stored by ``add(infer=False)``
with the real MiniLM embedder into SQLite (``--db`` keeps the file, so later runs skip the build). The
queries are the questions of the same file.

Per round it times, through the public API (``AsyncMemory.search``, hybrid, limit 10, defaults):

* ``first``: a query seen for the first time (its embedding is computed);
* ``repeated``: the same query again (its embedding comes from the query cache): the target figure;
* ``repeated_cpu``: the CPU time of the process (all its threads) during that repeated search: on a
  shared, loaded machine a steadier figure than the wall time;

and, for the repeated queries, each stage on its own: the store's ``vector_search`` (sqlite-vec KNN in
the partition, row fetch included), ``text_search`` (FTS5 match + BM25 in Python + row fetch), ``fuse``
and building the result dicts. Each round prints the load average, since the machine is shared.

Target (issue 14): repeated-query p50 <= 10 ms at 5k memories in scope, embedding included.

``--vectors-from FILE`` builds the scope from another store's turns and MiniLM vectors instead (e.g. the
file ``bench/retrieval.py --db`` keeps; copies with a numbered suffix fill up to ``--memories``): seconds
instead of many minutes of embedding on a loaded 2-core machine.

Usage: python bench/search.py [--memories 5000] [--queries 50] [--rounds 3] [--db FILE] [--data PATH]
       [--vectors-from FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_DATA = "shared/data/longmemeval/longmemeval_s_100.json.gz"
# shared/ beside the checkout (CI, a clone) or beside its parent (the team's layout)
DEFAULT_DATA = next((p for p in (Path(__file__).resolve().parents[i] / _DATA for i in (1, 2, 3)) if p.exists()),
                    Path(_DATA))
SCOPE = "bench-search"
STAGES = ("vector_search", "text_search", "fuse", "results")


def turns_and_questions(path: Path, memories: int) -> tuple[list[str], list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    seen: dict[str, None] = {}
    for question in data:
        for session in question["haystack_sessions"]:
            for turn in session:
                text = turn.get("content", "").strip()
                if text:
                    seen.setdefault(text[:20_000])
        if len(seen) >= memories:
            break
    return list(seen)[:memories], [q["question"] for q in data]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 0.5), 3), "p95": round(pct(values, 0.95), 3),
            "mean": round(statistics.fmean(values), 3)}


async def build(memory: Any, texts: list[str], vectors_from: str | None) -> float:
    start = time.perf_counter()
    have = await memory.count(user_id=SCOPE)
    if vectors_from and have < len(texts):
        await copy_scope(memory, vectors_from, len(texts) - have)
        return time.perf_counter() - start
    for lo in range(have, len(texts), 64):
        await memory.add([{"role": "user", "content": t} for t in texts[lo:lo + 64]], user_id=SCOPE, infer=False)
        print(f"\rstored {min(lo + 64, len(texts))}/{len(texts)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return time.perf_counter() - start


async def copy_scope(memory: Any, source: str, n: int) -> None:
    """``n`` records made from another store's turns and their stored vectors (no embedding); past the
    distinct turns available, copies get a numbered suffix."""
    import uuid

    from mindgate.memory.stores._base import AddChange, MemoryRecord, Scope, content_hash
    from mindgate.memory.stores._sqlite import SQLiteStore

    other = SQLiteStore(source)
    records = {r.id: r.memory for r in other.iter_records()}
    pairs = list({records[i]: v for i, v in other.iter_vectors() if i in records}.items())
    other.close()
    changes = []
    for j in range(n):
        text, vector = pairs[j % len(pairs)]
        text = text if j < len(pairs) else f"{text} ({j // len(pairs)})"
        changes.append(AddChange(MemoryRecord(id=str(uuid.uuid4()), memory=text, hash=content_hash(text),
                                              scope=Scope(user_id=SCOPE)), vector))
    for lo in range(0, n, 1000):
        await asyncio.to_thread(memory.store.apply, changes[lo:lo + 1000])


async def one_round(memory: Any, queries: list[str], salt: str) -> dict[str, Any]:
    from mindgate.memory._retrieval import fuse
    from mindgate.memory.stores._base import Scope

    timings: dict[str, list[float]] = {k: [] for k in ("first", "repeated", "repeated_cpu", *STAGES)}
    scope = Scope(user_id=SCOPE)
    k = memory.settings.candidates
    for query in queries:
        query = f"{query} {salt}"  # a new text each round, so "first" really embeds
        for kind in ("first", "repeated"):
            start, cpu = time.perf_counter(), time.process_time()
            await memory.search(query, user_id=SCOPE, limit=10)
            timings[kind].append((time.perf_counter() - start) * 1000)
        timings["repeated_cpu"].append((time.process_time() - cpu) * 1000)
        vector = memory._query_vectors.get(query)
        marks = [time.perf_counter()]
        vec_hits = memory.store.vector_search(scope, vector, k, None)
        marks.append(time.perf_counter())
        text_hits = memory.store.text_search(scope, query, k, None)
        marks.append(time.perf_counter())
        hits = fuse(vec_hits, text_hits, fusion=memory.settings.fusion, alpha=memory.settings.fusion_alpha,
                    rrf_k=memory.settings.rrf_k)[:10]
        marks.append(time.perf_counter())
        [h.to_result() for h in hits]
        marks.append(time.perf_counter())
        for stage, (a, b) in zip(STAGES, itertools.pairwise(marks), strict=True):
            timings[stage].append((b - a) * 1000)
    return {"load_avg_1m": round(os.getloadavg()[0], 2), **{k: summary(v) for k, v in timings.items()}}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mindgate import AsyncMemory

    torch.set_num_threads(args.threads)
    texts, questions = turns_and_questions(Path(args.data), args.memories)
    db = args.db or f"{tempfile.mkdtemp(prefix='mindgate-bench-')}/search.db"
    memory = AsyncMemory.from_config({"vector_store": {"provider": "sqlite", "config": {"path": db}}})
    await memory.count(user_id=SCOPE)  # opens the store
    build_s = await build(memory, texts, args.vectors_from)
    stored = await memory.count(user_id=SCOPE)
    await memory.search("warm up", user_id=SCOPE)
    rounds = []
    for n in range(args.rounds):
        rounds.append(await one_round(memory, questions[:args.queries], f"#{n}-{time.time_ns()}"))
        print_round(n + 1, rounds[-1], header=n == 0)
    await memory.close()
    chars = statistics.fmean(len(t) for t in texts)
    return {"bench": "search", "memories_in_scope": stored, "mean_chars": round(chars), "queries": args.queries,
            "build_s": round(build_s, 1), "threads": args.threads, "cpus": os.cpu_count(), "rounds": rounds}


def print_round(n: int, row: dict[str, Any], header: bool) -> None:
    kinds = ("first", "repeated", "repeated_cpu", *STAGES)
    if header:
        print(f"{'round':>5} {'load':>5} " + " ".join(f"{k + ' p50/p95':>22}" for k in kinds))
    print(f"{n:>5} {row['load_avg_1m']:>5} " + " ".join(f"{row[k]['p50']:>10.2f}/{row[k]['p95']:<11.2f}"
                                                     for k in kinds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--memories", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--db", default=None, help="SQLite file to keep (and reuse) the scope")
    parser.add_argument("--vectors-from", default=None, help="build the scope from the turns and vectors of "
                        "this SQLite store (e.g. bench/retrieval.py --db) instead of embedding them")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
