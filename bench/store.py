"""Memory store benchmark: search latency and add throughput at growing sizes, spread over many scopes.

For each size (the store grows from one size to the next) it prints:

* add throughput with the embedding step excluded: batched ``apply()`` of random unit vectors (this is
  also how the store is built, so the build time is reported too);
* search latency p50/p95 inside one random scope: ``vector_search`` (k=10), the same with a metadata
  filter, ``text_search`` (k=10), and ``hybrid``: what ``Memory.search(query, user_id=..., limit=10)``
  does once the query is embedded, with the default ``MemorySettings`` (the store's search work as the
  search thread runs it, ``AsyncMemory._hits``: both retrievers with ``memory.candidates`` each, convex
  fusion with the configured alpha, the time, speaker and comparison signals where the query has them,
  then each hit's result dict). Not included: the query embedding (the bench hands over a random unit
  vector), argument checks and the hop into the search thread. ``hybrid-rrf`` is the figure earlier runs
  printed as hybrid (plain RRF fusion of 50 + 50 candidates, no signals, no result dicts). Also the
  process CPU time per search of each kind;
* cold and steady state: ``hyb-first`` is ``hybrid`` on each scope's first search since the store was
  opened (the process's caches hold nothing of it; the OS page cache is as the run found it). Then every
  scope is searched twice, untimed, and the other columns are the steady state of a store that serves
  searches with no write in between: the SQLite store then searches each scope's vectors from its
  in-memory copy (``vector_store.config.vector_cache_mb``; the budget and what it holds are printed;
  ``--vector-cache-mb`` sets it, 0 turns it off);
* ``--writes-between N``: before each timed search (untimed), N single-memory adds to random *other*
  scopes, as a gateway where other users' chat turns store memories between this user's searches: the
  steady-state columns then show what the store's caches keep across writes to other scopes (the SQLite
  store's are per scope: a write to one scope leaves the others' copies and counts valid). The writes
  go to the searched scopes (so a scope searched later may have been written since its warm-up), or with
  ``--write-scopes K`` to K scopes that are not searched (some users write, the others search), or with
  ``--write-scopes -1`` to the scope about to be searched (one user's chat: each turn stores what was
  said, the next turn searches the same scope: what the store keeps across its own writes to a scope);
* add throughput with the embedding step included (the real MiniLM embedder): embed a batch, then
  ``apply()`` it, versus raw embedding of the same texts; the ratio is the target figure.

Targets on 2 cores: in-scope search p50 <= 2 ms at 1M stored (embedding excluded); add throughput with
embedding >= 90% of raw embedding throughput.

Usage: python bench/store.py [--sizes 10000,100000,1000000] [--store sqlite|pgvector] [--scopes 1000]
       [--no-embedder] [--dir PATH] [--keep] [--existing] [--vector-cache-mb N] [--writes-between N]
       [--write-scopes K|-1]
A store is made by a small factory keyed by name (``STORES``); add one there to bench another backend.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from mindgate.config import MemorySettings
from mindgate.memory._expand import comparison_parts
from mindgate.memory._filters import parse_filters
from mindgate.memory._memory import AsyncMemory
from mindgate.memory._retrieval import fuse
from mindgate.memory.stores._base import AddChange, MemoryRecord, MemoryStore, Scope, content_hash
from mindgate.providers._base import Embedder, EmbedderIdentity

DIMS = 384
IDENTITY = EmbedderIdentity("bench", "all-MiniLM-L6-v2-or-random", DIMS)


def _sqlite(workdir: Path) -> MemoryStore:
    from mindgate.memory.stores._sqlite import SQLiteStore

    cache = os.environ.get("MINDGATE_BENCH_VECTOR_CACHE_MB")  # set by --vector-cache-mb
    return SQLiteStore(workdir / "bench.db", vector_cache_mb=None if cache is None else int(cache))


def _pgvector(workdir: Path) -> MemoryStore:
    """PostgreSQL + pgvector at MINDGATE_BENCH_PG_DSN (collection ``bench``, emptied first), else a
    throwaway PostgreSQL 16 from pgserver on a unix socket (stopped and deleted at exit).
    MINDGATE_BENCH_PG_HNSW=0 benches it without the HNSW index (exact search only)."""
    from mindgate.config import PgVectorStoreConfig
    from mindgate.memory.stores._pgvector import PgVectorStore

    dsn = os.environ.get("MINDGATE_BENCH_PG_DSN")
    if not dsn:
        import pgserver

        dsn = pgserver.get_server(tempfile.mkdtemp(prefix="mindgate-bench-pg-"), cleanup_mode="delete").get_uri()
    hnsw = os.environ.get("MINDGATE_BENCH_PG_HNSW", "1") != "0"
    store = PgVectorStore(PgVectorStoreConfig(dsn=dsn, collection_name="bench", hnsw=hnsw))
    store.reset()
    return store


STORES: dict[str, Callable[[Path], MemoryStore]] = {"sqlite": _sqlite, "pgvector": _pgvector}

SUBJECTS = ["I", "my sister", "the agent", "our team", "Alice", "Bob", "my manager", "the kids", "grandma",
            "my partner"]
VERBS = ["moved to", "prefers", "is allergic to", "works at", "visited", "wrote about", "bought", "hates",
         "is learning", "plans a trip to", "cooked", "talked about"]
OBJECTS = ["Berlin", "green tea", "peanuts", "a small startup", "the Louvre", "vector databases", "jazz", "sushi",
           "Python", "the mountains", "a red bicycle", "oat milk", "Tokyo", "chess", "the dentist", "yoga"]
WHEN = ["last week", "yesterday", "in March", "every Sunday", "since 2019", "this morning", "on her birthday",
        "after work"]


def text(i: int, rng: np.random.Generator) -> str:
    s, v, o, w = (int(x) for x in rng.integers(0, [len(SUBJECTS), len(VERBS), len(OBJECTS), len(WHEN)]))
    return f"{SUBJECTS[s]} {VERBS[v]} {OBJECTS[o]} {WHEN[w]} (note {i})"


def scope_of(i: int, scopes: int) -> Scope:
    return Scope(user_id=f"user-{i % scopes:05d}")


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def changes(start: int, texts: Sequence[str], vectors: np.ndarray, scopes: int) -> list[AddChange]:
    return [AddChange(MemoryRecord(id=f"m{start + j:09d}", memory=t, hash=content_hash(t),
                                   scope=scope_of(start + j, scopes),
                                   metadata={"n": (start + j) // scopes % 10}),
                      vectors[j]) for j, t in enumerate(texts)]


def grow(store: MemoryStore, start: int, stop: int, scopes: int, batch: int,
         rng: np.random.Generator) -> tuple[float, float]:
    """Add records start..stop-1 in batches; returns (wall, process CPU) seconds spent in apply()."""
    spent = cpu = 0.0
    for lo in range(start, stop, batch):
        hi = min(stop, lo + batch)
        batch_changes = changes(lo, [text(i, rng) for i in range(lo, hi)], unit_vectors(rng, hi - lo), scopes)
        t0, c0 = time.perf_counter(), time.process_time()
        store.apply(batch_changes)
        spent, cpu = spent + time.perf_counter() - t0, cpu + time.process_time() - c0
    return spent, cpu


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3)}


class NoEmbedder(Embedder):
    """The bench hands search its query vectors: embedding is excluded, so any call is a bench bug."""

    provider = "none"

    async def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("the store bench excludes the query embedding; nothing may embed")


def searcher(store: MemoryStore) -> Callable[[Scope, np.ndarray, str], list[dict[str, object]]]:
    """``Memory.search``'s work for an embedded query on ``store`` with the default settings (see the
    module docstring): the search thread's ``_hits`` and the result dicts."""
    memory = AsyncMemory(embedder=NoEmbedder("none"), store=store, settings=MemorySettings())

    def search(scope: Scope, vector: np.ndarray, query: str) -> list[dict[str, object]]:
        expansions = [(part, vector) for part in comparison_parts(query)]  # the bench's queries have none
        hits = memory._hits(scope, query, vector, None, 10, "hybrid", True, None, expansions)
        return [hit.to_result() for hit in hits]

    return search


def query_text(rng: np.random.Generator) -> str:
    return f"{OBJECTS[int(rng.integers(0, len(OBJECTS)))]} {VERBS[int(rng.integers(0, len(VERBS)))]}"


def cold_and_warm(store: MemoryStore, scopes: int, queries: int, rng: np.random.Generator) -> dict[str, Any]:
    """``hybrid-first``: the first search of each of ``queries`` scopes since the store was opened (nothing
    of them in the process's caches; the OS page cache is as the run found it). Then every scope is searched
    twice, untimed, so that the figures after it are the steady state of a store serving searches with no
    writes in between: what the store's caches hold then (the SQLite store's vector copies, its text counts)."""
    hybrid = searcher(store)
    samples, cpu = [], 0.0
    for i in rng.permutation(scopes)[:queries]:
        vec, query = unit_vectors(rng, 1)[0], query_text(rng)
        t0, c0 = time.perf_counter(), time.process_time()
        hybrid(scope_of(int(i), scopes), vec, query)
        samples.append(time.perf_counter() - t0)
        cpu += time.process_time() - c0
    out: dict[str, Any] = {"hybrid-first": {**percentiles(samples), "cpu_ms": round(cpu * 1000 / len(samples), 3)}}
    t0 = time.perf_counter()
    for _ in range(2):
        for i in range(scopes):
            hybrid(scope_of(i, scopes), unit_vectors(rng, 1)[0], query_text(rng))
    out["warm_up_s"] = round(time.perf_counter() - t0, 1)
    return out


def vector_cache(store: MemoryStore) -> dict[str, float] | None:
    """The SQLite store's in-memory vector copies: budget and bytes held (MiB); None for other stores."""
    cache = getattr(store, "vector_cache", None)
    return cache() if callable(cache) else None


class Writes:
    """Single-memory adds before each timed search (``--writes-between``): to random scopes other than the one
    about to be searched, or (``writers`` -1) to that one."""

    def __init__(self, store: MemoryStore, scopes: int, per_search: int, first_id: int, writers: int = 0) -> None:
        self.store, self.scopes, self.per_search, self.next_id = store, scopes, per_search, first_id
        # 0: write to the other searched scopes; -1: to the scope searched next; K: to K scopes never searched
        self.writers = writers

    def before(self, scope: Scope, rng: np.random.Generator) -> None:
        for _ in range(self.per_search):
            other = scope
            while other == scope and self.scopes > 1 and self.writers >= 0:
                other = (Scope(user_id=f"writer-{int(rng.integers(0, self.writers)):05d}") if self.writers
                         else scope_of(int(rng.integers(0, self.scopes)), self.scopes))
            memory = text(self.next_id, rng)
            record = MemoryRecord(id=f"w-{uuid.uuid4()}", memory=memory, hash=content_hash(memory), scope=other)
            self.store.apply([AddChange(record, unit_vectors(rng, 1)[0])])
            self.next_id += 1


def search_latency(store: MemoryStore, scopes: int, queries: int, rng: np.random.Generator,
                   writes: Writes | None = None) -> dict[str, Any]:
    flt = parse_filters({"n": {"gte": 5}})
    hybrid = searcher(store)
    kinds: dict[str, Callable[[Scope, np.ndarray, str], object]] = {
        "vector": lambda s, v, q: store.vector_search(s, v, 10),
        "vector+filter": lambda s, v, q: store.vector_search(s, v, 10, flt),
        "text": lambda s, v, q: store.text_search(s, q, 10),
        "hybrid": hybrid,
        # the older figure: plain RRF over 50 + 50 candidates, no signals, no result dicts
        "hybrid-rrf": lambda s, v, q: fuse(store.vector_search(s, v, 50), store.text_search(s, q, 50))[:10],
    }
    out: dict[str, Any] = {}
    for name, fn in kinds.items():
        samples = []
        cpu = 0.0
        for i in range(queries + 20):
            scope = scope_of(int(rng.integers(0, scopes)), scopes)
            vec = unit_vectors(rng, 1)[0]
            query = query_text(rng)
            if writes is not None:
                writes.before(scope, rng)
            t0, c0 = time.perf_counter(), time.process_time()
            fn(scope, vec, query)
            if i >= 20:  # the first queries warm caches
                samples.append(time.perf_counter() - t0)
                cpu += time.process_time() - c0
        # CPU per search: on a shared, loaded machine steadier than the wall time
        out[name] = {**percentiles(samples), "cpu_ms": round(cpu * 1000 / queries, 3)}
    return out


class Embedding:
    """The real MiniLM embedder (mindgate's, or sentence-transformers directly if that is missing)."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        try:
            from mindgate.providers.local import SentenceTransformerEmbedder

            embedder = SentenceTransformerEmbedder()
            self.embed: Callable[[list[str]], np.ndarray] = embedder.embed_batch
            self.name = "mindgate SentenceTransformerEmbedder"
        except ImportError:
            from sentence_transformers import SentenceTransformer

            from mindgate._assets import default_embedder_path

            model = SentenceTransformer(str(default_embedder_path()), device="cpu", local_files_only=True)
            self.embed = lambda texts: np.asarray(model.encode(texts, batch_size=64), dtype=np.float32)
            self.name = "sentence-transformers"
        self.embed(["warm-up"] * 64)


def add_with_embedding(store: MemoryStore, emb: Embedding, start: int, n: int, scopes: int, batch: int,
                       rounds: int, rng: np.random.Generator) -> dict[str, Any]:
    """Raw embedding vs embed-then-apply on the same fresh texts, ``rounds`` times; medians."""
    raw, incl, apply_share = [], [], []
    for r in range(rounds):
        lo = start + r * n
        texts = [text(i, rng) for i in range(lo, lo + n)]
        t0 = time.perf_counter()
        for j in range(0, n, batch):
            emb.embed(texts[j:j + batch])
        raw.append(n / (time.perf_counter() - t0))
        applying = 0.0
        t0 = time.perf_counter()
        for j in range(0, n, batch):
            vectors = emb.embed(texts[j:j + batch])
            t1 = time.perf_counter()
            store.apply(changes(lo + j, texts[j:j + batch], vectors, scopes))
            applying += time.perf_counter() - t1
        total = time.perf_counter() - t0
        incl.append(n / total)
        apply_share.append(applying / total)
    raw_rate, incl_rate = statistics.median(raw), statistics.median(incl)
    return {"raw_embed_per_s": round(raw_rate, 1), "add_with_embed_per_s": round(incl_rate, 1),
            "ratio": round(incl_rate / raw_rate, 3), "apply_share": round(statistics.median(apply_share), 3)}


def disk_bytes(store: MemoryStore) -> int | None:
    if hasattr(store, "size_bytes"):  # pgvector: tables, indexes and TOAST
        return int(store.size_bytes())
    path = getattr(store, "path", None)
    if not isinstance(path, Path) or not path.exists():
        return None
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--store", default="sqlite", choices=sorted(STORES))
    parser.add_argument("--scopes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000, help="records per apply() while building")
    parser.add_argument("--queries", type=int, default=300, help="timed queries per search kind and size")
    parser.add_argument("--no-embedder", action="store_true", help="skip the embedding-included figures")
    parser.add_argument("--embed-texts", type=int, default=640, help="texts per embedding-included round")
    parser.add_argument("--embed-batch", type=int, default=64)
    parser.add_argument("--embed-rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--dir", type=Path, default=None, help="where the store lives (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the store files")
    parser.add_argument("--existing", action="store_true", help="--dir holds a store built by an earlier run "
                        "with --keep at the (single) size given: measure it without adding")
    parser.add_argument("--vector-cache-mb", type=int, default=None, help="sqlite: the vector_cache_mb setting "
                        "(default: the store's default, 1/8 of RAM within 256 MiB..4 GiB)")
    parser.add_argument("--writes-between", type=int, default=0, metavar="N", help="before each timed search, N "
                        "single-memory adds to random other scopes (untimed; they stay in the store)")
    parser.add_argument("--write-scopes", type=int, default=0, metavar="K", help="with --writes-between: write "
                        "to K scopes that are not searched (default: to the searched scopes, other than the one "
                        "searched next; -1: to the scope searched next)")
    args = parser.parse_args()
    if args.vector_cache_mb is not None:
        os.environ["MINDGATE_BENCH_VECTOR_CACHE_MB"] = str(args.vector_cache_mb)
    sizes = sorted(int(s) for s in args.sizes.split(","))

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="mindgate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    store = STORES[args.store](workdir)
    store.open(IDENTITY)
    emb = None if args.no_embedder else Embedding(args.threads)
    rng = np.random.default_rng(42)
    rows: list[dict[str, Any]] = []
    stored, extra = 0, 10**8  # embedding-included records get ids far above the built ones
    try:
        for size in sizes:
            seconds, cpu = (0.0, 0.0) if args.existing else grow(store, stored, size, args.scopes, args.batch, rng)
            row: dict[str, Any] = {"size": size, "added": size - stored, "build_s": round(seconds, 1),
                                   "build_cpu_s": round(cpu, 1),
                                   "add_per_s": round((size - stored) / seconds, 1) if seconds else None}
            stored = size
            warm = cold_and_warm(store, args.scopes, min(args.queries, args.scopes), rng)
            writes = (Writes(store, args.scopes, args.writes_between, 2 * extra, args.write_scopes)
                      if args.writes_between else None)
            row["search"] = {"hybrid-first": warm.pop("hybrid-first"),
                             **search_latency(store, args.scopes, args.queries, rng, writes)}
            row["writes_between"], row["write_scopes"] = args.writes_between, args.write_scopes
            row["warm_up_s"] = warm["warm_up_s"]
            row["vector_cache_mb"] = vector_cache(store)
            row["load_avg_1m"] = round(os.getloadavg()[0], 2)
            if emb is not None:
                row["embedding"] = add_with_embedding(store, emb, extra, args.embed_texts, args.scopes,
                                                      args.embed_batch, args.embed_rounds, rng)
                extra += args.embed_texts * args.embed_rounds
            row["disk_mb"] = round(b / 2**20, 1) if (b := disk_bytes(store)) else None
            rows.append(row)
            print_row(row, header=len(rows) == 1)
    finally:
        store.close()
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"bench": "store", "store": args.store, "scopes": args.scopes, "dims": DIMS,
                      "batch": args.batch, "threads": args.threads, "cpus": os.cpu_count(),
                      "embedder": emb.name if emb else None, "results": rows}))


def print_row(row: dict[str, Any], header: bool) -> None:
    if header:
        print(f"{'size':>9} {'add/s':>9} {'build s':>8} {'cpu s':>7} {'vec p50/p95 ms':>15} {'vec+flt p50/p95':>16} "
              f"{'text p50/p95':>14} {'hyb-first p50/p95':>18} {'hybrid p50/p95':>15} {'rrf p50/p95':>12} "
              f"{'embed/s':>8} {'add+emb/s':>9} "
              f"{'ratio':>6} {'disk MB':>8} {'load':>5}")
    s, e = row["search"], row.get("embedding") or {}

    def pair(d: dict[str, float]) -> str:
        return f"{d['p50_ms']:.2f}/{d['p95_ms']:.2f}"

    cpu = " ".join(f"{name} {d['cpu_ms']:.2f}" for name, d in s.items())

    print(f"{row['size']:>9} {row['add_per_s']!s:>9} {row['build_s']:>8} {row['build_cpu_s']:>7} "
          f"{pair(s['vector']):>15} "
          f"{pair(s['vector+filter']):>16} {pair(s['text']):>14} {pair(s['hybrid-first']):>18} {pair(s['hybrid']):>15} "
          f"{pair(s['hybrid-rrf']):>12} "
          f"{e.get('raw_embed_per_s', '-'):>8} {e.get('add_with_embed_per_s', '-'):>9} {e.get('ratio', '-'):>6} "
          f"{row['disk_mb']!s:>8} {row['load_avg_1m']:>5}   CPU ms per search: {cpu}", flush=True)
    cache = row.get("vector_cache_mb")
    held = f"; vector cache: budget {cache['budget']:.0f} MiB, {cache['held']:.0f} MiB held" if cache else ""
    writers = {0: "other searched scopes", -1: "the scope searched next"}.get(
        row.get("write_scopes", 0), f"{row.get('write_scopes')} unsearched scopes")
    between = (f"; {row['writes_between']} single-memory add(s) to {writers} before each timed search"
               if row.get("writes_between") else "")
    print(f"{'':>9} hyb-first: each scope's first search; the other searches follow a {row['warm_up_s']} s warm-up "
          f"(every scope searched twice: the steady state){held}{between}", flush=True)


if __name__ == "__main__":
    main()
