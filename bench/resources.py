"""Resource-aware switching: what it costs and how close the memory estimate is.

1. Decision overhead per request: a two-tier chain over a model of the in-process engine (loaded, so the
   placement's fast path is taken) and an instant answer, routed with placement + tiers vs the same chain
   without them, alternating in blocks so drift hits both alike. Target: <= 0.1 ms per request.
   Side by side: one direct reading of the machine (what a per-request check would cost) vs the
   monitor's published snapshot.
2. Monitor CPU cost: the resource monitor sampling at 1 Hz for ``--seconds``; the sampler thread's own
   CPU time (from the OS, per thread; 10 ms clock-tick resolution) over the wall time, and, finer, the
   thread CPU time of one reading times the rate. Target: <= 0.5 % of one core.
3. Fit estimate vs measured RSS for each configuration the tests load (the shipped SmolLM2 at several
   contexts), each in a fresh process (bench/fit.py's measurement).

    python bench/resources.py [--requests 20000] [--seconds 20] [--contexts 256 512 1024 2048 4096 8192]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from fit import measure  # bench/fit.py: RSS delta of a fresh process loading the GGUF
from mindgate._assets import default_gguf_path
from mindgate.models._monitor import ResourceMonitor
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message
from mindgate.providers.local._pool import LocalModelPool
from mindgate.providers.management import _fit as fit
from mindgate.providers.management._gguf_info import read_gguf_info
from mindgate.providers.management._resources import format_bytes, read_resources
from mindgate.routing._placement import Placement
from mindgate.routing._router import Router, Target

TARGET_DECISION_MS = 0.1
TARGET_MONITOR_CORE_PERCENT = 0.5
HI: list[Message] = [{"role": "user", "content": "hi"}]


class InstantLocalModel(ChatModel):
    """Looks like a model of the in-process engine (path, context, pool) to the placement, but answers at
    once, so the time measured is the router's and the placement's."""

    provider = "local"
    _response = ChatResponse(content="ok", model="instant")

    def __init__(self, path: Path, n_ctx: int, pool: LocalModelPool) -> None:
        super().__init__(path.stem)
        self.model_path, self.n_ctx, self.pool = path, n_ctx, pool

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        return self._response

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(content="ok")


def decision_overhead(requests: int) -> dict[str, Any]:
    gguf = default_gguf_path()
    pool = LocalModelPool(n_threads=1, check_fit=False)
    pool.load(gguf, n_ctx=512)
    monitor = ResourceMonitor(1.0)
    big, small = InstantLocalModel(gguf, 512, pool), InstantLocalModel(gguf, 256, pool)
    free = monitor.latest().free_bytes(gpu=False)
    placement = Placement(monitor, pool=pool)
    aware = Router([Target(big, name="big", min_free_memory=max(1, free // 4)),
                    Target(small, name="small", min_free_memory=None)], name="aware", placement=placement)
    plain = Router([Target(big, name="big"), Target(small, name="small")], name="plain")

    async def run() -> tuple[list[float], list[float]]:
        with_p, without = [], []
        block = 200
        for _ in range(max(1, requests // (2 * block))):
            for router, out in ((plain, without), (aware, with_p)):
                start = time.perf_counter()
                for _ in range(block):
                    await router.acomplete(HI)
                out.append((time.perf_counter() - start) / block)
        return with_p, without

    asyncio.run(run())  # warm-up
    with_p, without = asyncio.run(run())
    reads = 2000
    start = time.perf_counter()
    for _ in range(reads):
        read_resources()
    direct = (time.perf_counter() - start) / reads
    start = time.perf_counter()
    for _ in range(reads * 50):
        monitor.latest()
    published = (time.perf_counter() - start) / (reads * 50)
    if aware.tiers is not None:
        aware.tiers.close()
    monitor.stop()
    pool.close()
    p50_with, p50_without = statistics.median(with_p), statistics.median(without)
    return {"requests": requests, "router_ms": round(p50_without * 1000, 5),
            "router_with_placement_and_tiers_ms": round(p50_with * 1000, 5),
            "decision_overhead_ms": round((p50_with - p50_without) * 1000, 5),
            "direct_reading_ms": round(direct * 1000, 4), "published_snapshot_ms": round(published * 1000, 6),
            "within_target": (p50_with - p50_without) * 1000 <= TARGET_DECISION_MS}


def monitor_cost(seconds: float) -> dict[str, Any]:
    monitor = ResourceMonitor(1.0)
    monitor.latest()
    thread = next(t for t in threading.enumerate() if t.name == "mindgate-resources")
    process = psutil.Process()

    def cpu_of_thread() -> float:
        for t in process.threads():
            if t.id == thread.native_id:
                return float(t.user_time + t.system_time)
        raise RuntimeError("the monitor thread is gone")

    before, started = cpu_of_thread(), time.monotonic()
    time.sleep(seconds)
    used, wall = cpu_of_thread() - before, time.monotonic() - started
    monitor.stop()
    per_sample = []
    for _ in range(200):
        t0 = time.thread_time()
        read_resources()
        per_sample.append(time.thread_time() - t0)
    percent = used / wall * 100
    per_sample_s = statistics.median(per_sample)
    from_samples = per_sample_s / 1.0 * 100
    return {"interval_s": 1.0, "seconds": round(wall, 1), "thread_cpu_s": round(used, 4),
            "core_percent": round(percent, 4), "cpu_per_sample_ms": round(per_sample_s * 1000, 4),
            "core_percent_from_samples": round(from_samples, 4), "gpu_status": read_resources().gpu_status,
            "within_target": max(percent, from_samples) <= TARGET_MONITOR_CORE_PERCENT}


def fit_vs_rss(contexts: list[int]) -> list[dict[str, Any]]:
    gguf = default_gguf_path()
    shape = fit.ModelShape.from_gguf(read_gguf_info(gguf))
    rows = []
    for n_ctx in contexts:
        estimate = fit.estimate(shape, n_ctx)
        measured = measure(gguf, n_ctx)
        rows.append({"configuration": f"{gguf.stem}@ctx{n_ctx}", "estimate_bytes": estimate.total_bytes,
                     "measured_rss_bytes": measured, "ratio": round(estimate.total_bytes / measured, 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--contexts", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    args = parser.parse_args()
    decision = decision_overhead(args.requests)
    print("1. decision overhead per request (p50 of blocks of 200, in-process instant model)")
    print(f"   router alone                      {decision['router_ms']:.4f} ms")
    print(f"   router + placement + tiers        {decision['router_with_placement_and_tiers_ms']:.4f} ms")
    print(f"   overhead                          {decision['decision_overhead_ms']:.4f} ms "
          f"(target <= {TARGET_DECISION_MS} ms: {'met' if decision['within_target'] else 'MISSED'})")
    print(f"   a direct reading of the machine   {decision['direct_reading_ms']:.4f} ms vs the published snapshot "
          f"{decision['published_snapshot_ms']:.6f} ms")
    cost = monitor_cost(args.seconds)
    print(f"2. monitor at 1 Hz for {cost['seconds']} s: sampler thread used {cost['thread_cpu_s']} s CPU = "
          f"{cost['core_percent']:.4f} % of one core (target <= {TARGET_MONITOR_CORE_PERCENT} %: "
          f"{'met' if cost['within_target'] else 'MISSED'}); {cost['cpu_per_sample_ms']} ms CPU per sample = "
          f"{cost['core_percent_from_samples']:.4f} % of one core at 1 Hz")
    print(f"   GPU status here: {cost['gpu_status']}")
    rows = fit_vs_rss(args.contexts)
    print("3. fit estimate vs measured RSS (fresh process per configuration)")
    print(f"   {'configuration':<34} {'estimate':>10} {'measured':>10} {'ratio':>6}")
    for row in rows:
        print(f"   {row['configuration']:<34} {format_bytes(row['estimate_bytes']):>10} "
              f"{format_bytes(row['measured_rss_bytes']):>10} {row['ratio']:>6.3f}")
    print(json.dumps({"decision": decision, "monitor": cost, "fit_vs_rss": rows}))


if __name__ == "__main__":
    main()
