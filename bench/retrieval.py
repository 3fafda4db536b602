"""Retrieval quality on LongMemEval (shared/data/longmemeval): today's RRF vs the defaults and vs the
configuration fitted on held-out questions (fusion, time and speaker signals, augmented keys), in one run.

Each question gets its own scope (user_id = question id); every haystack turn is stored with
``add(infer=False)`` in conversation order (metadata: session id and date; the turn's id as provenance), one
call per session (its turns embedded in one batch), or one per turn with ``--per-message`` (the same records;
vectors equal up to float rounding, several times slower to build). ``--db`` keeps this store (store A: plain
keys, as before fact-augmented keys) and a later run resumes or reuses it; ``--stored-only`` evaluates only
the questions it already holds completely. Questions are taken round robin by question_type, so a prefix
(``--questions N``, or an ingest stopped early) covers every type.

Per question the candidates (``memory.candidates`` per retriever) are fetched once through the store and fused
in Python with :func:`mindgate.memory._retrieval.fuse`, so the comparison is exact and cheap:

* ``rrf``: reciprocal rank fusion with k=60 (the default before fact-augmented keys: "today's RRF");
* ``convex``: convex fusion with the configured ``memory.fusion_alpha``;
* ``vector`` / ``text``: one retriever.

``--key-facts FILE`` builds (or resumes) store C: the same turns, each by its own ``add`` call, with
``memory.key_facts`` on (``--key-facts-weight``; turn vectors reused from store A, fact sentences embedded).
Every run prints today's RRF (store A) beside the defaults (:class:`MemorySettings`) through ``search(...,
reference_time=question_date)`` on the store keyed the way the defaults key memories, per question type, with
the ratio and the types where the defaults are lower.

``--calibrate`` fits, on every other question of each type (by mean turn recall@5+@10), the fusion (RRF or
convex with alpha), ``memory.time_weight`` (time expressions read against the question date),
``memory.speaker_weight`` and, with ``--key-context FILE`` / ``--key-facts FILE``, which keys to use: store A,
store B (the same turns, each by its own ``add`` call, with ``memory.key_context`` on,
``--key-context-weight``; the vectors come from store A, so B costs no embedding) or store C. It prints the
held-out questions (the other half) and then every question through ``search(...,
reference_time=question_date)`` with the fitted settings, next to today's RRF, with the ratio and the question
types where the fitted configuration is below RRF. ``--write-config FILE`` writes the fitted ``memory:``
settings as a mindgate config file.

Printed per question_type and overall: session recall@5/@10 (share of evidence sessions among the sessions of
the top-k memories) and turn recall@5/@10 (share of ``has_answer`` turns in the top-k); abstention questions
(no evidence) are skipped. Then ``search()`` latency through the public API with today's settings: p50/p95 on
first sight of a question (query embedding included) and repeated (the query embedding comes from the cache).

``--ingest-cost N`` only measures per-message ``add()`` throughput of N turns with fact keys off vs on.

Usage: python bench/retrieval.py [--data PATH] [--questions N] [--db FILE] [--per-message] [--stored-only]
       [--key-facts FILE [--key-facts-weight W]] [--ingest-cost N]
       [--calibrate [--key-context FILE] [--key-context-weight W] [--write-config FILE]]
       [--store sqlite|pgvector --dsn DSN]
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

from mindgate.config import KEY_FACTS_WEIGHT

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/longmemeval/longmemeval_s_100.json.gz"
KS = (5, 10)
METRICS = [f"{kind}@{k}" for kind in ("session", "turn") for k in KS]
ALPHAS = [round(0.1 * i, 1) for i in range(1, 10)]
TIME_WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.8]
SPEAKER_WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.4]
# one signal at a time over RRF, on every question (no fitting): what each technique does alone
ABLATION: dict[str, tuple[str, float, float, float, str]] = {
    "rrf": ("rrf", 0.0, 0.0, 0.0, "plain"), "rrf+time0.3": ("rrf", 0.0, 0.3, 0.0, "plain"),
    "rrf+speaker0.2": ("rrf", 0.0, 0.0, 0.2, "plain"), "rrf+speaker0.3": ("rrf", 0.0, 0.0, 0.3, "plain"),
    "rrf+speaker0.4": ("rrf", 0.0, 0.0, 0.4, "plain"),
    "rrf+key_context": ("rrf", 0.0, 0.0, 0.0, "context"), "rrf+key_facts": ("rrf", 0.0, 0.0, 0.0, "facts"),
    "convex0.5": ("convex", 0.5, 0.0, 0.0, "plain"),
    "rrf+time0.3+speaker0.3": ("rrf", 0.0, 0.3, 0.3, "plain"),
    "rrf+time0.3+speaker0.3+key_facts": ("rrf", 0.0, 0.3, 0.3, "facts")}


def load(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Non-abstention questions, stratified by question_type (round robin in file order), so that a
    prefix (``limit``, or an ingest stopped early) covers every type and the even / odd halves too."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        questions = [q for q in json.load(fh) if not q["question_id"].endswith("_abs")]
    limit = min(limit or len(questions), len(questions))
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


async def stored_turns(memory: Any, scope: str) -> set[str]:
    """Ids of the turns a scope already holds (so an interrupted ingest resumes where it stopped)."""
    done: set[str] = set()
    offset = 0
    while True:
        page = (await memory.get_all(user_id=scope, limit=1000, offset=offset))["results"]
        for item in page:
            done.update((item.get("metadata") or {}).get("source_message_ids", []))
        if len(page) < 1000:
            return done
        offset += len(page)


async def ingest(memory: Any, question: dict[str, Any], per_message: bool) -> int:
    """Every non-empty turn in conversation order, with its session and date: by its own ``add`` call
    (``per_message``), or one ``add`` per session (the same stored records and vectors, embedded in
    batches, so several times faster to build). Turns already stored in the scope are skipped."""
    scope = question["question_id"]
    stored = 0
    done = await stored_turns(memory, scope)
    for sid, date, session in zip(question["haystack_session_ids"], question["haystack_dates"],
                                  question["haystack_sessions"], strict=True):
        turns = [{"role": t["role"], "content": t["content"], "id": f"{sid}#{i}"}
                 for i, t in enumerate(session) if t.get("content", "").strip() and f"{sid}#{i}" not in done]
        meta = {"session_id": sid, "date": date}
        for batch in ([[t] for t in turns] if per_message else [turns] if turns else []):
            result = await memory.add(batch, user_id=scope, metadata=meta, infer=False)
            stored += len(result["results"])
    return stored


def evidence(question: dict[str, Any]) -> tuple[set[str], set[str]]:
    sessions = set(question["answer_session_ids"])
    turns = {f"{sid}#{i}" for sid, session in zip(question["haystack_session_ids"], question["haystack_sessions"],
                                                   strict=True)
             for i, t in enumerate(session) if t.get("has_answer")}
    return sessions, turns


def recall(metadatas: list[dict[str, Any]], gold: set[str], key: str) -> float:
    got: set[str] = set()
    for meta in metadatas:
        got.update([meta["session_id"]] if key == "session" else meta.get("source_message_ids", []))
    return len(gold & got) / len(gold) if gold else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def scores_of(metadatas: list[dict[str, Any]], question: dict[str, Any]) -> dict[str, float]:
    gold_sessions, gold_turns = evidence(question)
    out = {f"session@{k}": recall(metadatas[:k], gold_sessions, "session") for k in KS}
    if gold_turns:
        out.update({f"turn@{k}": recall(metadatas[:k], gold_turns, "turn") for k in KS})
    return out


def table(per_question: list[tuple[dict[str, Any], dict[str, float]]]) -> dict[str, dict[str, float | None]]:
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for question, row in per_question:
        for group in (question["question_type"], "overall"):
            for metric, value in row.items():
                groups[group][metric].append(value)
    return {g: {m: round(statistics.fmean(v), 4) if (v := groups[g][m]) else None for m in METRICS}
            for g in sorted(groups, key=lambda g: (g == "overall", g))}


async def complete(memory: Any, question: dict[str, Any]) -> bool:
    """Whether the scope holds every turn of the question (a turn whose text repeats an earlier one of the
    same question is deduplicated, so it counts as held)."""
    from mindgate.memory.stores._base import content_hash

    stored = await stored_turns(memory, question["question_id"])
    seen: set[str] = set()
    for sid, session in zip(question["haystack_session_ids"], question["haystack_sessions"], strict=True):
        for i, t in enumerate(session):
            if not t.get("content", "").strip():
                continue
            digest = content_hash(t["content"])
            if f"{sid}#{i}" not in stored and digest not in seen:
                return False
            seen.add(digest)
    return True


async def candidates_of(memory: Any, questions: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """Per question, the vector and text candidates (``memory.candidates`` each), fetched once."""
    from mindgate.memory.stores._base import Scope

    k = memory.settings.candidates
    out = []
    for q in questions:
        scope = Scope(user_id=q["question_id"])
        vector = await memory.embedder.aembed(q["question"])
        out.append((await asyncio.to_thread(memory.store.vector_search, scope, vector, k, None),
                    await asyncio.to_thread(memory.store.text_search, scope, q["question"], k, None)))
    return out


def stored_vector_embedder(memory: Any) -> Any:
    """An embedder that answers with the vectors store A already holds for the same texts (the same model's
    output for the same text; a miss is embedded for real), so a keyed store costs no embedding of turns
    (only of what they are keyed with that store A does not hold, e.g. fact sentences)."""
    from mindgate.memory._keys import context_text
    from mindgate.providers._base import Embedder

    texts = {r.id: r.memory for r in memory.store.iter_records()}
    known: dict[str, Any] = {}
    for memory_id, vector in memory.store.iter_vectors():
        if memory_id in texts:
            known[texts[memory_id]] = known[context_text(texts[memory_id])] = vector
    base = memory.embedder

    class StoredVectors(Embedder):
        provider = base.provider

        async def _embed_batch(self, batch: Any) -> Any:
            import numpy as np

            missing = [t for t in batch if t not in known]
            if missing:
                known.update(zip(missing, await base.aembed_batch(missing), strict=True))
            return np.stack([known[t] for t in batch])

    return StoredVectors(base.model)


async def keyed_store(memory: Any, questions: list[dict[str, Any]], path: str, settings: Any) -> Any:
    """A store of the same turns, each by its own ``add`` call, with the key construction of ``settings``
    (``memory.key_context`` or ``memory.key_facts``); resumes a partly built one. The fact sentences are
    embedded up front in batches (the same vectors as one at a time, several times faster)."""
    from mindgate import AsyncMemory
    from mindgate.memory._keys import fact_text
    from mindgate.memory.stores._sqlite import SQLiteStore

    embedder = stored_vector_embedder(memory)
    keyed = AsyncMemory(embedder=embedder, store=SQLiteStore(path), settings=settings)
    if settings.key_facts:
        todo = [q for q in questions if not await complete(keyed, q)]
        facts = sorted({f for q in todo for session in q["haystack_sessions"] for t in session
                        if (f := fact_text(t.get("content", ""), t["role"]))})
        for start in range(0, len(facts), 256):
            await embedder.aembed_batch(facts[start:start + 256])
            print(f"\rfact sentences embedded: {min(start + 256, len(facts))}/{len(facts)}", end="", file=sys.stderr)
    for n, q in enumerate(questions, 1):
        await ingest(keyed, q, True)
        print(f"\rkeyed store {path}: {n}/{len(questions)} questions", end="", file=sys.stderr)
    print(file=sys.stderr)
    return keyed


def split(questions: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Calibration and held-out halves: every other question of each question_type (so both halves hold
    every type)."""
    seen: dict[str, int] = defaultdict(int)
    train, test = [], []
    for i, q in enumerate(questions):
        (train if seen[q["question_type"]] % 2 == 0 else test).append(i)
        seen[q["question_type"]] += 1
    return train, test


Params = tuple[str, float, float, float, str]  # fusion, alpha, time weight, speaker weight, keys (plain/context/facts)


def ranked(cands: tuple[Any, Any], params: Params, when: Any, speaker: Any = None) -> list[Any]:
    from mindgate.memory._retrieval import fuse

    fusion, alpha, time_weight, speaker_weight, _ = params
    return fuse(cands[0], cands[1], fusion="rrf" if fusion == "rrf" else "convex", alpha=alpha, rrf_k=60,
                when=when, time_weight=time_weight, speaker=speaker, speaker_weight=speaker_weight)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mindgate import AsyncMemory
    from mindgate.config import MemorySettings
    from mindgate.memory._retrieval import single
    from mindgate.memory._speaker import query_speaker
    from mindgate.memory._timeinfo import parse_time, query_windows

    torch.set_num_threads(args.threads)
    questions = load(Path(args.data), args.questions)
    db_path = args.db or f"{tempfile.mkdtemp(prefix='mindgate-bench-')}/lme.db"
    store: dict[str, Any] = ({"provider": "pgvector", "config": {"dsn": args.dsn, "collection_name": "bench_lme"}}
                             if args.store == "pgvector" else {"provider": "sqlite", "config": {"path": db_path}})
    # store A: last release's keys (plain, no facts); its candidates give today's RRF
    memory = AsyncMemory.from_config({"vector_store": store, "memory": {"time_aware": False, "key_facts": False}})
    t0 = time.perf_counter()
    if args.stored_only:
        questions = [q for q in questions if await complete(memory, q)]
    else:
        for n, q in enumerate(questions, 1):
            await ingest(memory, q, args.per_message)  # resumes: turns already stored are skipped
            print(f"\ringested {n}/{len(questions)} questions", end="", file=sys.stderr)
        print(file=sys.stderr)
    ingest_s = time.perf_counter() - t0
    stored = sum([await memory.count(user_id=q["question_id"]) for q in questions])

    settings = memory.settings
    cands_a = await candidates_of(memory, questions)

    def evaluate(method: str, alpha: float, subset: list[int]) -> list[tuple[dict[str, Any], dict[str, float]]]:
        rows = []
        for i in subset:
            vec_hits, text_hits = cands_a[i]
            if method in ("vector", "text"):
                hits = single(vec_hits if method == "vector" else text_hits, method)  # type: ignore[arg-type]
            else:
                hits = ranked(cands_a[i], (method, alpha, 0.0, 0.0, False), None)
            rows.append((questions[i], scores_of([h.record.metadata for h in hits[:max(KS)]], questions[i])))
        return rows

    everyone = list(range(len(questions)))
    methods = {"rrf": ("rrf", 0.0), "convex": ("convex", settings.fusion_alpha), "vector": ("vector", 0.0),
               "text": ("text", 0.0)}
    results = {name: table(evaluate(method, alpha, everyone)) for name, (method, alpha) in methods.items()}
    report: dict[str, Any] = {"bench": "retrieval", "data": Path(args.data).name, "questions": len(questions),
                              "memories": stored, "store": args.store, "ingest_s": round(ingest_s, 1),
                              "fusion_alpha": settings.fusion_alpha, "results": results}

    stores = {"plain": memory}
    if args.key_context:
        stores["context"] = await keyed_store(memory, questions, args.key_context, MemorySettings(
            key_context=True, key_context_weight=args.key_context_weight))
    if args.key_facts:
        stores["facts"] = await keyed_store(memory, questions, args.key_facts, MemorySettings(
            key_facts=True, key_facts_weight=args.key_facts_weight))
    defaults = MemorySettings()
    default_keys = "facts" if defaults.key_facts else "context" if defaults.key_context else "plain"
    if default_keys in stores and (default_keys == "plain" or getattr(defaults, f"key_{default_keys}_weight") ==
                                   getattr(args, f"key_{default_keys}_weight")):
        report["defaults"] = {"settings": defaults.model_dump(include=set(CONFIG_KEYS)),
                              "all": await api_table(stores[default_keys], defaults, questions)}
    if args.calibrate:
        cands = {name: cands_a if store is memory else await candidates_of(store, questions)
                 for name, store in stores.items()}
        whens = [query_windows(q["question"], parse_time(q["question_date"])) for q in questions]
        speakers = [query_speaker(q["question"]) for q in questions]
        train, test = split(questions)

        def rows_of(params: Params, subset: list[int]) -> list[tuple[dict[str, Any], dict[str, float]]]:
            out = []
            for i in subset:
                hits = ranked(cands[params[4]][i], params, whens[i], speakers[i])[:max(KS)]
                out.append((questions[i], scores_of([h.record.metadata for h in hits], questions[i])))
            return out

        def objective(params: Params) -> float:
            return statistics.fmean(r["turn@5"] + r["turn@10"] for _, r in rows_of(params, train) if "turn@5" in r)

        grid: list[Params] = [(f, a, w, sw, keys) for keys in stores for sw in SPEAKER_WEIGHTS
                              for w in TIME_WEIGHTS for f, a in [("rrf", 0.0), *[("convex", a) for a in ALPHAS]]]
        curve = {p: objective(p) for p in grid}
        ablation = {name: table(rows_of(p, everyone)) for name, p in ABLATION.items() if p[4] in stores}
        best = max(grid, key=lambda p: (round(curve[p], 6), p[4] == "plain", p[0] == "rrf", -abs(p[1] - 0.5),
                                        -p[2], -p[3]))
        fitted = MemorySettings(fusion=best[0], fusion_alpha=best[1] if best[0] == "convex" else settings.fusion_alpha,  # type: ignore[arg-type]
                                time_aware=True, time_weight=best[2], speaker_weight=best[3],
                                key_context=best[4] == "context", key_context_weight=args.key_context_weight,
                                key_facts=best[4] == "facts", key_facts_weight=args.key_facts_weight)
        # the fitted configuration through the public API, on every question
        new = await api_table(stores[best[4]], fitted, questions)
        config = {"memory": {k: getattr(fitted, k) for k in CONFIG_KEYS}}
        if args.write_config:
            import yaml

            Path(args.write_config).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        report["calibration"] = {
            "train_questions": len(train), "test_questions": len(test),
            "best": {"fusion": best[0], "alpha": best[1], "time_weight": best[2], "speaker_weight": best[3],
                     "keys": best[4], "objective": round(curve[best], 4)},
            "rrf_objective_train": round(objective(("rrf", 0.0, 0.0, 0.0, "plain")), 4),
            "best_per_keys": {keys: max((round(v, 4), p) for p, v in curve.items() if p[4] == keys) for keys in stores},
            "held_out": {"rrf": table(evaluate("rrf", 0.0, test)),
                         "new": table(rows_of(best, test))},
            "config": config, "new_all": new, "ablation": ablation,
            "ratio_all": {m: round((new["overall"][m] or 0.0) / b, 3) if (b := results["rrf"]["overall"][m]) else None
                          for m in METRICS},
            "types_below_rrf": [g for g in new if g != "overall" and any(
                (new[g][m] or 0) < (results["rrf"][g][m] or 0) for m in ("turn@5", "turn@10"))]}

    latency: dict[str, list[float]] = {"first": [], "repeated": []}
    for q in questions:
        for kind in ("first", "repeated"):
            start = time.perf_counter()
            await memory.search(q["question"], user_id=q["question_id"], limit=max(KS))
            latency[kind].append((time.perf_counter() - start) * 1000)
    if args.latency_scope:
        report["big_scope"] = await big_scope_latency(memory, questions, args.latency_scope)
    for store in stores.values():
        await store.close()
    report["latency_ms"] = {k: {"p50": round(pct(v, 0.5), 2), "p95": round(pct(v, 0.95), 2)}
                            for k, v in latency.items()}
    report["gain"] = {f"convex/{m}": {metric: round(results["convex"]["overall"][metric] / b, 3)
                                      if (b := results[m]["overall"][metric]) else None for metric in METRICS}
                      for m in ("rrf", "vector", "text")}
    return report


CONFIG_KEYS = ("fusion", "fusion_alpha", "time_aware", "time_weight", "speaker_weight", "key_context",
               "key_context_weight", "key_facts", "key_facts_weight", "expansion_weight")


async def api_table(store: Any, settings: Any, questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Every question through the public ``search(..., reference_time=question date)`` with ``settings`` on
    the store of ``store`` (an AsyncMemory whose keys were built the way ``settings`` says)."""
    from mindgate import AsyncMemory

    api = AsyncMemory(embedder=store.embedder, store=store.store, settings=settings)
    rows = []
    for q in questions:
        found = await api.search(q["question"], user_id=q["question_id"], limit=max(KS),
                                 reference_time=q["question_date"])
        rows.append((q, scores_of([r["metadata"] for r in found["results"]], q)))
    return table(rows)


async def big_scope_latency(memory: Any, questions: list[dict[str, Any]], size: int) -> dict[str, Any]:
    """search() latency in one scope of ``size`` memories: copies of the stored turns with their stored
    vectors (nothing is embedded again; copies beyond the turns available get a numbered suffix)."""
    import uuid

    from mindgate.memory.stores._base import AddChange, MemoryRecord, content_hash

    records = {r.id: r for r in memory.store.iter_records()}
    pairs = [(records[i], v) for i, v in memory.store.iter_vectors() if i in records]
    scope_id = f"bench-big-{size}"
    existing = await memory.count(user_id=scope_id)
    changes = []
    for n in range(existing, size):
        record, vector = pairs[n % len(pairs)]
        text = record.memory if n < len(pairs) else f"{record.memory} ({n // len(pairs)})"
        copy = MemoryRecord(id=str(uuid.uuid4()), memory=text, hash=content_hash(text),
                            scope=type(record.scope)(user_id=scope_id), metadata=record.metadata)
        changes.append(AddChange(copy, vector))
    for start in range(0, len(changes), 1000):
        await asyncio.to_thread(memory.store.apply, changes[start:start + 1000])
    latency: dict[str, list[float]] = {"first": [], "repeated": []}
    for q in questions:
        for kind in ("first", "repeated"):
            start_t = time.perf_counter()
            await memory.search(f"{q['question']} ({scope_id})" if kind == "first" else q["question"],
                                user_id=scope_id, limit=max(KS))
            latency[kind].append((time.perf_counter() - start_t) * 1000)
    return {"memories": await memory.count(user_id=scope_id),
            "latency_ms": {k: {"p50": round(pct(v, 0.5), 2), "p95": round(pct(v, 0.95), 2)}
                           for k, v in latency.items()}}


async def ingest_cost(data: Path, turns_n: int, rounds: int, threads: int) -> dict[str, Any]:
    """Per-message ``add(infer=False)`` throughput with fact-augmented keys off and on: the same LongMemEval
    turns (both roles, in order), one embedder, a fresh store per run, alternating runs so that load drift
    hits both sides alike."""
    import torch

    from mindgate import AsyncMemory
    from mindgate.config import MemorySettings
    from mindgate.memory.stores._sqlite import SQLiteStore

    torch.set_num_threads(threads)
    turns = [{"role": t["role"], "content": t["content"]} for q in load(data) for s in q["haystack_sessions"]
             for t in s if t.get("content", "").strip()][:turns_n]
    first = AsyncMemory.from_config({"vector_store": {"provider": "sqlite", "config": {
        "path": f"{tempfile.mkdtemp(prefix='mindgate-bench-')}/warm.db"}}})
    await first.add("warm-up", user_id="warm", infer=False)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for name in rates:
            memory = AsyncMemory(embedder=first.embedder, settings=MemorySettings(key_facts=name == "on"),
                                 store=SQLiteStore(f"{tempfile.mkdtemp(prefix='mindgate-bench-')}/ab.db"))
            start = time.perf_counter()
            for turn in turns:
                await memory.add([turn], user_id="ab", infer=False)
            rates[name].append(len(turns) / (time.perf_counter() - start))
            await asyncio.to_thread(memory.store.close)
    await first.close()
    median = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    return {"turns": len(turns), "rounds": rounds, "adds_per_s": median,
            "ratio_on_off": round(median["on"] / median["off"], 3), "load_average": os.getloadavg()[0]}


def _rows(tables: dict[str, dict[str, dict[str, float | None]]]) -> None:
    first = next(iter(tables.values()))
    for group in first:
        for method, rows in tables.items():
            row = rows.get(group, {})
            print(f"  {group:<28}{method:<8}" + "".join(f"{row.get(m) if row.get(m) is not None else '-':>12}"
                                                      for m in METRICS))


def print_table(report: dict[str, Any]) -> None:
    print(f"LongMemEval {report['data']}: {report['questions']} questions, {report['memories']} memories "
          f"({report['store']}), ingest {report['ingest_s']} s; convex alpha {report['fusion_alpha']}")
    print(f"{'question_type':<28}{'method':<8}" + "".join(f"{m:>12}" for m in METRICS))
    for group in report["results"]["rrf"]:
        for method, rows in report["results"].items():
            row = rows[group]
            print(f"{group:<28}{method:<8}" + "".join(f"{row[m] if row[m] is not None else '-':>12}" for m in METRICS))
    for name, ratios in report["gain"].items():
        print(f"gain {name}: " + ", ".join(f"{m} x{r}" for m, r in ratios.items()))
    if "calibration" in report:
        cal = report["calibration"]
        best = cal["best"]
        print(f"calibration on {cal['train_questions']} questions (turn@5+@10): fusion {best['fusion']} alpha "
              f"{best['alpha']} time_weight {best['time_weight']} speaker_weight {best['speaker_weight']} keys "
              f"{best['keys']} -> "
              f"{best['objective']} (RRF "
              f"{cal['rrf_objective_train']}); config: {json.dumps(cal['config'])}")
        print(f"held-out {cal['test_questions']} questions, today's RRF vs the fitted configuration:")
        _rows({"rrf": cal["held_out"]["rrf"], "new": cal["held_out"]["new"]})
        print("every question: today's RRF (store A) vs the fitted configuration through search() "
              "(reference_time = question date):")
        _rows({"rrf": report["results"]["rrf"], "new": cal["new_all"]})
        print("ratio new/rrf: " + ", ".join(f"{m} x{r}" for m, r in cal["ratio_all"].items()))
        print(f"question types where new < RRF on turn@5 or turn@10: {cal['types_below_rrf'] or 'none'}")
        print("one technique at a time, every question (turn@5 / turn@10, overall then per type):")
        for name, rows in cal["ablation"].items():
            print(f"  {name:<24}{rows['overall']['turn@5']} / {rows['overall']['turn@10']}   " + "  ".join(
                f"{g[:10]} {r['turn@5']}/{r['turn@10']}" for g, r in rows.items() if g != "overall"))
    if "defaults" in report:
        print(f"every question: today's RRF (store A) vs the defaults ({json.dumps(report['defaults']['settings'])}) "
              "through search() (reference_time = question date):")
        _rows({"rrf": report["results"]["rrf"], "default": report["defaults"]["all"]})
        rrf, new = report["results"]["rrf"], report["defaults"]["all"]
        print("ratio default/rrf: " + ", ".join(
            f"{m} x{round((new['overall'][m] or 0) / b, 3)}" for m in METRICS if (b := rrf["overall"][m])))
        print("question types where the defaults < RRF on turn@5 or turn@10: " + str([
            g for g in new if g != "overall"
            and any((new[g][m] or 0) < (rrf[g][m] or 0) for m in ("turn@5", "turn@10"))] or "none"))
    for kind, lat in report["latency_ms"].items():
        print(f"search() latency, {kind} query: p50 {lat['p50']} ms  p95 {lat['p95']} ms (embedding included)")
    if "big_scope" in report:
        big = report["big_scope"]
        for kind, lat in big["latency_ms"].items():
            print(f"search() latency in one scope of {big['memories']} memories, {kind} query: p50 {lat['p50']} ms  "
                  f"p95 {lat['p95']} ms (embedding included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--questions", type=int, default=None, help="a stratified sample of N questions")
    parser.add_argument("--store", choices=("sqlite", "pgvector"), default="sqlite")
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN for --store pgvector")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--db", default=None, help="SQLite file to keep (and reuse on later runs) the ingested turns")
    parser.add_argument("--latency-scope", type=int, default=0,
                        help="also time search() in one scope of N memories (copies of the stored turns)")
    parser.add_argument("--per-message", action="store_true", help="store each turn by its own add() call")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit fusion (RRF or convex alpha) and the time weight on half the questions, report "
                             "the other half and every question through search() next to today's RRF")
    parser.add_argument("--key-context", default=None, metavar="FILE",
                        help="with --calibrate: build a second SQLite store with memory.key_context on (each turn "
                             "by its own add(); vectors reused from the first store) and fit on it")
    parser.add_argument("--key-context-weight", type=float, default=0.5)
    parser.add_argument("--key-facts", default=None, metavar="FILE",
                        help="build a SQLite store with memory.key_facts on (each turn by its own add(); turn vectors "
                             "reused from the first store, fact sentences embedded): the defaults row and "
                             "--calibrate use it")
    parser.add_argument("--key-facts-weight", type=float, default=KEY_FACTS_WEIGHT)
    parser.add_argument("--ingest-cost", type=int, default=0, metavar="N",
                        help="only measure per-message add() throughput of N turns with key_facts off vs on")
    parser.add_argument("--stored-only", action="store_true",
                        help="no ingest: evaluate the questions whose turns --db already holds completely")
    parser.add_argument("--write-config", default=None, metavar="FILE",
                        help="with --calibrate: write the fitted `memory:` settings as a mindgate config file")
    args = parser.parse_args()
    if args.ingest_cost:
        cost = asyncio.run(ingest_cost(Path(args.data), args.ingest_cost, 3, args.threads))
        print(f"per-message add(), {cost['turns']} LongMemEval turns, median of {cost['rounds']}: key_facts off "
              f"{cost['adds_per_s']['off']}/s, on {cost['adds_per_s']['on']}/s (x{cost['ratio_on_off']}); "
              f"load average {cost['load_average']:.1f}")
        print(json.dumps(cost))
        return
    report = asyncio.run(run(args))
    print_table(report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
