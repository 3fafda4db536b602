"""Retrieval quality on LongMemEval (shared/data/longmemeval): hybrid vs dense-only vs BM25-only.

Each question gets its own scope (user_id = question id); every haystack turn is stored with
``add(infer=False)`` (metadata: session id and date; the turn's id as provenance), then the question is
searched in its scope with each mode through the same Memory API. Printed per question_type and overall:
session recall@5/@10 (share of evidence sessions among the sessions of the top-k memories), turn
recall@5/@10 (share of ``has_answer`` turns in the top-k), and search latency p50/p95. Abstention
questions (no evidence) are skipped. Fusion's gain is printed as a ratio over each single retriever.

Usage: python bench/retrieval.py [--data PATH] [--questions N] [--db FILE] [--store sqlite|pgvector --dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/longmemeval/longmemeval_s_100.json.gz"
MODES = ("hybrid", "vector", "text")
KS = (5, 10)


def load(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """Non-abstention questions; with ``limit``, a sample stratified by question_type (round robin in file
    order), so a small run still covers every type."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        questions = [q for q in json.load(fh) if not q["question_id"].endswith("_abs")]
    if not limit or limit >= len(questions):
        return questions
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for q in questions:
        by_type[q["question_type"]].append(q)
    queues = [list(reversed(v)) for _, v in sorted(by_type.items())]
    sample: list[dict[str, Any]] = []
    while len(sample) < limit:
        for queue in queues:
            if queue and len(sample) < limit:
                sample.append(queue.pop())
    return sample


async def ingest(memory: Any, question: dict[str, Any]) -> int:
    scope = question["question_id"]
    stored = 0
    for sid, date, session in zip(question["haystack_session_ids"], question["haystack_dates"],
                                  question["haystack_sessions"], strict=True):
        turns = [{"role": t["role"], "content": t["content"], "id": f"{sid}#{i}"}
                 for i, t in enumerate(session) if t.get("content", "").strip()]
        if turns:
            result = await memory.add(turns, user_id=scope, metadata={"session_id": sid, "date": date}, infer=False)
            stored += len(result["results"])
    return stored


def evidence(question: dict[str, Any]) -> tuple[set[str], set[str]]:
    sessions = set(question["answer_session_ids"])
    turns = {f"{sid}#{i}" for sid, session in zip(question["haystack_session_ids"], question["haystack_sessions"],
                                                   strict=True)
             for i, t in enumerate(session) if t.get("has_answer")}
    return sessions, turns


def recall(found: list[dict[str, Any]], gold: set[str], key: str) -> float:
    got: set[str] = set()
    for item in found:
        meta = item.get("metadata") or {}
        got.update([meta["session_id"]] if key == "session" else meta.get("source_message_ids", []))
    return len(gold & got) / len(gold) if gold else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mindgate import AsyncMemory

    torch.set_num_threads(args.threads)
    questions = load(Path(args.data), args.questions)
    db_path = args.db or f"{tempfile.mkdtemp(prefix='mindgate-bench-')}/lme.db"
    store: dict[str, Any] = ({"provider": "pgvector", "config": {"dsn": args.dsn, "collection_name": "bench_lme"}}
                             if args.store == "pgvector" else {"provider": "sqlite", "config": {"path": db_path}})
    memory = AsyncMemory.from_config({"vector_store": store})
    t0 = time.perf_counter()
    stored = 0
    for n, q in enumerate(questions, 1):
        existing = await memory.count(user_id=q["question_id"])
        stored += existing or await ingest(memory, q)  # --db: questions already stored are reused
        print(f"\ringested {n}/{len(questions)} questions ({stored} memories)", end="", file=sys.stderr)
    ingest_s = time.perf_counter() - t0
    print(file=sys.stderr)

    scores: dict[str, dict[str, dict[str, list[float]]]] = {m: defaultdict(lambda: defaultdict(list)) for m in MODES}
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    for q in questions:
        gold_sessions, gold_turns = evidence(q)
        for mode in MODES:
            start = time.perf_counter()
            found = (await memory.search(q["question"], user_id=q["question_id"], limit=max(KS), mode=mode))["results"]
            latency[mode].append((time.perf_counter() - start) * 1000)
            for group in (q["question_type"], "overall"):
                for k in KS:
                    scores[mode][group][f"session@{k}"].append(recall(found[:k], gold_sessions, "session"))
                    if gold_turns:
                        scores[mode][group][f"turn@{k}"].append(recall(found[:k], gold_turns, "turn"))
    await memory.close()

    metrics = [f"{kind}@{k}" for kind in ("session", "turn") for k in KS]
    groups = [*sorted({q["question_type"] for q in questions}), "overall"]
    table: dict[str, Any] = {}
    for mode in MODES:
        table[mode] = {g: {m: round(statistics.fmean(v), 4) if (v := scores[mode][g][m]) else None for m in metrics}
                       for g in groups}
        table[mode]["latency_ms"] = {"p50": round(pct(latency[mode], 0.5), 2),
                                     "p95": round(pct(latency[mode], 0.95), 2)}
    return {"bench": "retrieval", "data": Path(args.data).name, "questions": len(questions), "memories": stored,
            "store": args.store, "ingest_s": round(ingest_s, 1), "results": table,
            "gain": {f"hybrid/{m}": {metric: round(table["hybrid"]["overall"][metric] / b, 3)
                                     if (b := table[m]["overall"][metric]) else None for metric in metrics}
                     for m in ("vector", "text")}}


def print_table(report: dict[str, Any]) -> None:
    metrics = ["session@5", "session@10", "turn@5", "turn@10"]
    print(f"LongMemEval {report['data']}: {report['questions']} questions, {report['memories']} memories "
          f"({report['store']}), ingest {report['ingest_s']} s")
    print(f"{'question_type':<28}{'mode':<8}" + "".join(f"{m:>12}" for m in metrics))
    groups = [g for g in report["results"]["hybrid"] if g != "latency_ms"]
    for group in groups:
        for mode in MODES:
            row = report["results"][mode][group]
            print(f"{group:<28}{mode:<8}" + "".join(f"{row[m] if row[m] is not None else '-':>12}" for m in metrics))
    for mode in MODES:
        lat = report["results"][mode]["latency_ms"]
        print(f"search latency {mode:<7} p50 {lat['p50']} ms  p95 {lat['p95']} ms (embedding included)")
    for name, ratios in report["gain"].items():
        print(f"gain {name}: " + ", ".join(f"{m} x{r}" for m, r in ratios.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--questions", type=int, default=None, help="first N non-abstention questions")
    parser.add_argument("--store", choices=("sqlite", "pgvector"), default="sqlite")
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN for --store pgvector")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--db", default=None, help="SQLite file to keep (and reuse on later runs) the ingested turns")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print_table(report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
