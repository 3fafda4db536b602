"""Soak: the gateway under steady concurrency for minutes, on loopback, stopping by itself.

Three processes: a fast fake OpenAI-compatible upstream (answers at once: a completion, or a 3-chunk
stream), the gateway (uvicorn, one worker, a routing chain to the fake upstream, memory over SQLite), and
this load generator, which keeps ``--concurrency`` requests in flight (httpx, asyncio): chat completions
(40%), streamed chats (20%), memory adds (10%), memory searches (20%) and memory lists (10%), over 50
users. Every ``--interval`` seconds it records requests, errors (non-2xx, transport errors, a stream
without ``[DONE]``), p50/p99/max latency, and the gateway's RSS, USS, open files and threads, plus the
store's size on disk, and the machine's load average (other work on the machine shows there).

The verdicts at the end compare the steady part of the run (after the first interval, the warm-up):

* errors: none at all, and no interval has more than the first;
* memory: RSS over the run, and its growth over the second half, in MB and per minute (the SQLite file
  is mmapped, so file pages the gateway touched count towards RSS: the store's growth is printed beside);
* latency: the worst interval p99 over the median interval p99.

Embedder: a hashing embedder by default (see ``bench/crash.py``), so the figures are the gateway's,
not MiniLM's; ``--embedder minilm`` uses the real model in the gateway.

Usage: python bench/soak.py [--minutes 3] [--concurrency 16] [--interval 10] [--embedder hash|minilm] [--json]
       python bench/soak.py --seconds 15 --interval 3     (the CI setting)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crash import child_env, free_port, make_embedder

USERS = [f"soak-user-{i}" for i in range(50)]
WORDS = ["tea", "cello", "Porto", "goats", "chess", "jazz", "Berlin", "peanuts", "yoga", "sushi", "Tokyo", "oat",
         "bicycle", "garden", "novel", "violin", "coffee", "mountains", "river", "piano"]
MIX = [("chat", 40), ("stream", 20), ("add", 10), ("search", 20), ("list", 10)]


# -- children: the fake upstream and the gateway -------------------------------------------------------


def upstream_child(port: int) -> None:
    """A fast OpenAI-compatible upstream: every chat answers at once (JSON or a 3-chunk SSE stream)."""
    import uvicorn

    completion = json.dumps({"id": "chatcmpl-soak", "object": "chat.completion", "created": 0, "model": "fake-model",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}).encode()
    chunks = [b"data: " + json.dumps({"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 0,
                                      "model": "fake-model", "choices": [{"index": 0, "delta": {"content": piece},
                                                                          "finish_reason": None}]}).encode() + b"\n\n"
              for piece in ("Hello", " there", ".")] + [b"data: [DONE]\n\n"]
    models = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": models})
            return
        if json.loads(body or b"{}").get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": completion})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off")


def gateway_child(db: str, port: int, upstream_port: int, embedder_kind: str) -> None:
    """The gateway as ``mindgate serve`` runs it, with a chain to the fake upstream and the given embedder."""
    import uvicorn

    from mindgate.config import MindgateConfig
    from mindgate.gateway._app import create_app
    from mindgate.gateway._server import uvicorn_config
    from mindgate.memory._memory import AsyncMemory
    from mindgate.memory.stores._sqlite import SQLiteStore

    config = MindgateConfig.from_dict({
        "providers": {"fake": {"provider": "openai_compatible", "config": {
            "base_url": f"http://127.0.0.1:{upstream_port}/v1", "model": "fake-model", "timeout": 30}}},
        "routing": {"chains": {"main": {"targets": [{"endpoint": "fake", "timeout": 30}]}}, "default": "main"},
        "gateway": {"memory": False}})
    embedder = make_embedder(embedder_kind)
    memory = AsyncMemory(embedder=embedder, store=SQLiteStore(db))
    app = create_app(config, memory=memory, embedder=embedder)
    uvicorn.Server(uvicorn_config(app, config, host="127.0.0.1", port=port, log_level="error")).run()


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdout=out,
                                stderr=subprocess.STDOUT, env=child_env())


# -- load ----------------------------------------------------------------------------------------------


@dataclass
class Interval:
    """What happened in one interval of the run."""

    index: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    kinds: dict[str, list[float]] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(text[:200])


async def one_request(http: Any, rng: random.Random) -> tuple[str, bool, str]:
    """One request of the mix; returns (kind, ok, detail)."""
    kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
    user = rng.choice(USERS)
    words = " ".join(rng.choice(WORDS) for _ in range(6))
    if kind in ("chat", "stream"):
        body = {"model": "main", "messages": [{"role": "user", "content": f"Tell me about {words}"}],
                "max_tokens": 16, "stream": kind == "stream"}
        if kind == "stream":
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                raw = await response.aread()
            ok = response.status_code == 200 and raw.rstrip().endswith(b"data: [DONE]") and b'"error"' not in raw
            return kind, ok, f"HTTP {response.status_code}: {raw[-200:]!r}"
        response = await http.post("/v1/chat/completions", json=body)
        ok = response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])
    elif kind == "add":
        response = await http.post("/v1/memories", json={
            "messages": f"I like {words} {rng.getrandbits(40):x}", "user_id": user, "infer": False})
        ok = response.status_code == 200 and response.json()["results"][0]["event"] == "ADD"
    elif kind == "search":
        response = await http.post("/v1/memories/search", json={"query": words, "user_id": user, "limit": 5})
        ok = response.status_code == 200 and isinstance(response.json()["results"], list)
    else:
        response = await http.get("/v1/memories", params={"user_id": user, "limit": 20})
        ok = response.status_code == 200 and isinstance(response.json()["results"], list)
    return kind, ok, f"HTTP {response.status_code}: {response.text[:200]}"


async def load(base_url: str, seconds: float, interval: float, concurrency: int, seed: int,
               sample: Any) -> tuple[list[Interval], list[dict[str, Any]]]:
    """Keep ``concurrency`` requests in flight for ``seconds``; ``sample()`` is called at each interval end."""
    import httpx

    start = time.monotonic()
    count = max(1, round(seconds / interval))
    intervals = [Interval(i) for i in range(count)]
    samples: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
            while (elapsed := time.monotonic() - start) < seconds:
                began = time.perf_counter()
                try:
                    kind, ok, detail = await one_request(http, rng)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    kind, ok, detail = "transport", False, f"{type(exc).__name__}: {exc}"
                spent = time.perf_counter() - began
                slot = intervals[min(int(elapsed / interval), count - 1)]
                slot.latencies.append(spent)
                slot.kinds.setdefault(kind, []).append(spent)
                if not ok:
                    slot.error(f"{kind}: {detail}")

    async def sampler() -> None:
        for i in range(count):
            await asyncio.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
            samples.append(sample())

    await asyncio.gather(sampler(), *(worker(i) for i in range(concurrency)))
    return intervals, samples


def process_sample(pid: int, db: Path) -> Any:
    import psutil

    proc = psutil.Process(pid)
    me = psutil.Process()
    proc.cpu_percent()
    me.cpu_percent()

    def sample() -> dict[str, Any]:
        full = proc.memory_full_info()
        store = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
        return {"rss_mb": full.rss / 2**20, "uss_mb": full.uss / 2**20, "open_files": proc.num_fds(),
                "threads": proc.num_threads(), "store_mb": store / 2**20,
                "gateway_cpu": proc.cpu_percent(), "client_cpu": me.cpu_percent(), "load1": os.getloadavg()[0]}

    return sample


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summarize(intervals: list[Interval], samples: list[dict[str, Any]], opts: argparse.Namespace,
              interval: float) -> dict[str, Any]:
    rows = []
    for slot, sample in zip(intervals, samples, strict=False):
        lat = slot.latencies
        rows.append({"interval": slot.index + 1, "end_s": round((slot.index + 1) * interval, 1),
                     "requests": len(lat), "rps": round(len(lat) / interval, 1), "errors": slot.errors,
                     "p50_ms": round(percentile(lat, 0.50) * 1000, 2), "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
                     "max_ms": round(max(lat, default=0) * 1000, 2),
                     **{k: round(v, 1) if isinstance(v, float) else v for k, v in sample.items()},
                     "error_samples": slot.error_samples})
    steady = rows[1:] if len(rows) > 2 else rows
    p99s = [r["p99_ms"] for r in steady]
    half = steady[len(steady) // 2:]  # the trend that matters is the late one, after caches have settled
    minutes = (half[-1]["end_s"] - half[0]["end_s"]) / 60 if len(half) > 1 else 0.0
    growth = half[-1]["rss_mb"] - half[0]["rss_mb"] if half else 0.0
    rss = [r["rss_mb"] for r in steady]
    total_errors = sum(r["errors"] for r in rows)
    by_kind: dict[str, list[float]] = {}
    for slot in intervals:
        for kind, values in slot.kinds.items():
            by_kind.setdefault(kind, []).extend(values)
    return {
        "benchmark": "soak", "seconds": opts.seconds, "interval_s": interval, "concurrency": opts.concurrency,
        "embedder": opts.embedder, "mix": dict(MIX),
        "requests": sum(r["requests"] for r in rows), "errors": total_errors,
        "rps_mean": round(statistics.mean(r["rps"] for r in steady), 1) if steady else 0.0,
        "errors_growing": any(r["errors"] > rows[0]["errors"] for r in rows[1:]),
        "rss_first_steady_mb": rss[0] if rss else None, "rss_min_mb": min(rss, default=None),
        "rss_max_mb": max(rss, default=None), "rss_last_mb": rss[-1] if rss else None,
        "rss_second_half_growth_mb": round(growth, 1),
        "rss_second_half_growth_mb_per_min": round(growth / minutes, 2) if minutes else None,
        "uss_second_half_growth_mb": round(half[-1]["uss_mb"] - half[0]["uss_mb"], 1) if half else None,
        "store_second_half_growth_mb": round(half[-1]["store_mb"] - half[0]["store_mb"], 1) if half else None,
        "p99_median_ms": round(statistics.median(p99s), 2) if p99s else None,
        "p99_worst_over_median": round(max(p99s) / statistics.median(p99s), 2) if p99s else None,
        "by_kind": {k: {"requests": len(v), "p50_ms": round(percentile(v, 0.5) * 1000, 2),
                        "p99_ms": round(percentile(v, 0.99) * 1000, 2)} for k, v in sorted(by_kind.items())},
        "intervals": rows,
    }


def print_table(summary: dict[str, Any]) -> None:
    cols = ["end_s", "requests", "rps", "errors", "p50_ms", "p99_ms", "max_ms", "rss_mb", "uss_mb", "open_files",
            "threads", "store_mb", "gateway_cpu", "client_cpu", "load1"]
    print("".join(f"{c:>12}" for c in cols))
    for row in summary["intervals"]:
        print("".join(f"{row[c]:>12}" for c in cols))
    print(f"\n{summary['requests']} requests, {summary['errors']} errors (growing: {summary['errors_growing']}), "
          f"{summary['rps_mean']} req/s at concurrency {summary['concurrency']}")
    print(f"RSS after warm-up: first {summary['rss_first_steady_mb']}, min {summary['rss_min_mb']}, max "
          f"{summary['rss_max_mb']}, last {summary['rss_last_mb']} MB; second half "
          f"{summary['rss_second_half_growth_mb']:+} MB ({summary['rss_second_half_growth_mb_per_min']} MB/min; USS "
          f"{summary['uss_second_half_growth_mb']:+} MB; store on disk {summary['store_second_half_growth_mb']:+} MB)")
    print(f"p99 per interval: median {summary['p99_median_ms']} ms, worst/median {summary['p99_worst_over_median']}")
    print("by kind: " + ", ".join(f"{k} {v['requests']} req p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms"
                                  for k, v in summary["by_kind"].items()))
    for row in summary["intervals"]:
        for text in row["error_samples"]:
            print(f"error in interval {row['interval']}: {text}")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per reported interval")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        role, *args = opts.child
        if role == "upstream":
            upstream_child(int(args[0]))
        else:
            gateway_child(args[0], int(args[1]), int(args[2]), args[3])
        return 0
    opts.seconds = opts.seconds or opts.minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="mindgate-soak-"))
    log = workdir / "children.log"
    db = workdir / "soak.db"
    upstream_port, gateway_port = free_port(), free_port()
    procs = [spawn(["--child", "upstream", str(upstream_port)], log)]
    try:
        wait_http(f"http://127.0.0.1:{upstream_port}/v1/models", procs[0])
        procs.append(spawn(["--child", "gateway", str(db), str(gateway_port), str(upstream_port), opts.embedder], log))
        wait_http(f"http://127.0.0.1:{gateway_port}/readyz", procs[1])
        intervals, samples = asyncio.run(load(f"http://127.0.0.1:{gateway_port}", opts.seconds, opts.interval,
                                              opts.concurrency, opts.seed, process_sample(procs[1].pid, db)))
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a child process died during the run; see {log}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(intervals, samples, opts, opts.interval)
    if not opts.json:
        print_table(summary)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
