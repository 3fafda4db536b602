"""Gateway overhead: the same load sent straight to an upstream and through ``mindgate serve``, in one run.

Three processes on loopback: a minimal fast OpenAI-compatible upstream (raw asyncio, canned answers, this
file's ``--upstream`` mode), the real gateway started with ``mindgate serve`` and a config whose ``llm``
is that upstream (so requests go through the real route, router and provider client, with access logging
on, written to a file), and this load generator (httpx, async). For each API (``chat``:
``/v1/chat/completions``; ``responses``: ``/v1/responses``, which the upstream serves itself, as LM
Studio, vLLM and Ollama do, while the gateway bridges it onto the upstream's chat completions, or with
``--responses-api native`` passes it through to the upstream's own route), for 1, 32
and 256 concurrent clients, non-streaming and streaming (8 content chunks), it reports requests/s and
p50/p99 latency direct and through the gateway, the p50 overhead and the throughput ratio; then the
gateway's RSS over a long run. Responses requests are sent with ``store: false`` (``--store`` keeps them,
which adds a SQLite write per request).

Targets (2 cores): p50 overhead <= 1 ms, 32-client throughput >= 80% of direct, RSS growth < 10%. Read the
1-client rows for the overhead: there the gateway's CPU per request is the difference. At 32 clients this
single-process httpx load generator is itself the bottleneck (~200-300 requests/s on either side, against
640-970 at 1 client), so the 32-client ratio measures the client. With a raw-socket client in 1-2
processes the canned upstream serves 36-57k requests/s and the gateway ~2,000 (json) / ~1,000 (stream):
a fair throughput ratio needs an upstream with a model-like service time (the notes of issue 12).

Usage: python bench/gateway.py [--requests 2000] [--rss-requests 5000] [--apis chat responses]
[--baseline DIR] (``--rss-requests 50000`` for the full memory run, ``0`` to skip it). Prints a table, then
JSON. ``--baseline DIR`` serves a second gateway from another source tree (``DIR/src`` and
``DIR/pyproject.toml``, e.g. ``git worktree add /tmp/base main``), measured in turn with the first in the
same run: an A/B that a busy machine's drift hits alike; ``gw cpu/req`` and ``base cpu/req`` are each
gateway's CPU time per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
PROMPT = [{"role": "user", "content": "Say something short about the sea."}]
STREAM_CHUNKS = 8


# -- the upstream ------------------------------------------------------------------------------------------


def _http(status: str, content_type: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def _canned_responses() -> tuple[bytes, bytes]:
    """A Responses API answer and its semantic event stream, as an upstream serving /v1/responses sends."""
    text = "The sea is wide and deep."
    item = {"type": "message", "id": "msg_bench", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    response = {"id": "resp_bench", "object": "response", "created_at": 0, "status": "completed", "model": "bench",
                "output": [item], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 12, "output_tokens": 8, "total_tokens": 20}}
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, object]] = [{"type": "response.created", "response": started},
                                       {"type": "response.in_progress", "response": started},
                                       {"type": "response.output_item.added", "output_index": 0,
                                        "item": {**item, "status": "in_progress", "content": []}},
                                       {"type": "response.content_part.added", "item_id": "msg_bench",
                                        "output_index": 0, "content_index": 0,
                                        "part": {"type": "output_text", "text": "", "annotations": []}}]
    events += [{"type": "response.output_text.delta", "item_id": "msg_bench", "output_index": 0,
                "content_index": 0, "delta": f" word{i}"} for i in range(1, STREAM_CHUNKS)]
    events += [{"type": "response.output_text.done", "item_id": "msg_bench", "output_index": 0, "content_index": 0,
                "text": text},
               {"type": "response.output_item.done", "output_index": 0, "item": item},
               {"type": "response.completed", "response": response}]
    sse = b"".join(b"event: " + str(e["type"]).encode() + b"\ndata: "
                   + json.dumps({**e, "sequence_number": n}).encode() + b"\n\n" for n, e in enumerate(events))
    return (_http("200 OK", b"application/json", json.dumps(response).encode()),
            _http("200 OK", b"text/event-stream", sse))


def _canned() -> tuple[bytes, bytes, bytes]:
    completion = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "The sea is wide and deep."},
                               "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}}
    events = []
    for i in range(STREAM_CHUNKS):
        delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f" word{i}"}
        events.append({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    models = {"object": "list", "data": [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]}
    return (_http("200 OK", b"application/json", json.dumps(completion).encode()),
            _http("200 OK", b"text/event-stream", sse),
            _http("200 OK", b"application/json", json.dumps(models).encode()))


class Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one canned answer per request: as little work per request as Python allows."""

    COMPLETION, STREAM, MODELS = _canned()
    RESPONSE, RESPONSE_STREAM = _canned_responses()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = CONTENT_LENGTH.search(self.buffer, 0, end)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            head, body = self.buffer[:end], self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            stream = b'"stream":true' in body or b'"stream": true' in body
            if head.startswith(b"GET"):
                self.transport.write(self.MODELS)
            elif head.startswith(b"POST /v1/responses"):
                self.transport.write(self.RESPONSE_STREAM if stream else self.RESPONSE)
            else:
                self.transport.write(self.STREAM if stream else self.COMPLETION)


def run_upstream(port: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Upstream, "127.0.0.1", port, backlog=1024))
    print("ready", flush=True)
    loop.run_until_complete(server.serve_forever())


# -- processes ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def start_gateway(workdir: Path, upstream: str, responses_api: str,
                  source: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``mindgate serve`` on a free port in front of ``upstream``, with its own home and memory store under
    ``workdir``; ``source``: a source tree whose ``src`` is imported instead of the installed mindgate (the
    ``--baseline`` gateway, which may keep its store in another format)."""
    port = free_port()
    home = workdir / f"gateway-{port}"
    home.mkdir()
    config = home / "bench.yaml"
    config.write_text(json.dumps({
        "llm": {"provider": "openai_compatible",
                "config": {"base_url": upstream, "model": "bench", "responses_api": responses_api}},
        "vector_store": {"config": {"path": str(home / "memory.db")}},
    }))
    env = {**os.environ, "MINDGATE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    log = (home / "gateway.log").open("wb")
    gateway = subprocess.Popen([sys.executable, "-m", "mindgate.cli", "serve", "--port", str(port),
                                "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_http(f"http://127.0.0.1:{port}/readyz", gateway)
    return gateway, f"http://127.0.0.1:{port}/v1"


def start_processes(workdir: Path, baseline: Path | None = None, responses_api: str = "bridge"
                    ) -> tuple[dict[str, subprocess.Popen[bytes]], dict[str, str]]:
    """The upstream, the gateway and (with ``baseline``) the baseline gateway: processes and base URLs."""
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(up_port)], stdout=subprocess.PIPE)
    assert upstream.stdout is not None
    upstream.stdout.readline()
    processes = {"direct": upstream}
    bases = {"direct": f"http://127.0.0.1:{up_port}/v1"}
    try:
        processes["gateway"], bases["gateway"] = start_gateway(workdir, bases["direct"], responses_api)
        if baseline is not None:
            processes["baseline"], bases["baseline"] = start_gateway(workdir, bases["direct"], responses_api,
                                                                     baseline)
    except BaseException:
        for process in processes.values():
            process.terminate()
        raise
    return processes, bases


# -- load ----------------------------------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float = 0.0  # CPU time the server process used per request (robust to a busy machine)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measured(base: str, server: psutil.Process, *, clients: int, requests: int, stream: bool,
             api: str = "chat", store: bool = False) -> Result:
    """:func:`load`, plus the server process's CPU time per request."""
    before = sum(server.cpu_times()[:2])
    result = asyncio.run(load(base, clients=clients, requests=requests, stream=stream, api=api, store=store))
    result.server_cpu_us = round((sum(server.cpu_times()[:2]) - before) / max(1, result.requests) * 1e6, 1)
    return result


async def load(base: str, *, clients: int, requests: int, stream: bool, api: str = "chat",
               store: bool = False) -> Result:
    if api == "responses":
        path = "/responses"
        body: dict[str, object] = {"model": "bench", "input": PROMPT[0]["content"], "max_output_tokens": 16,
                                   "stream": stream, "store": store}
    else:
        path, body = "/chat/completions", {"model": "bench", "messages": PROMPT, "max_tokens": 16, "stream": stream}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                if stream:
                    async with client.stream("POST", path, json=body) as response:
                        async for _ in response.aiter_bytes():
                            pass
                else:
                    response = await client.post(path, json=body)
                    await response.aread()
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors += 1

        per_client = max(1, requests // clients)

        async def worker(n: int) -> None:
            for _ in range(n):
                await one()

        await asyncio.gather(*(worker(2) for _ in range(clients)))  # warm-up: connections open
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(per_client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return Result(len(latencies), round(elapsed, 3), round(len(latencies) / elapsed, 1),
                  round(_percentile(latencies, 0.50) * 1000, 3), round(_percentile(latencies, 0.99) * 1000, 3),
                  errors)


async def rss_run(base: str, gateway_pid: int, requests: int) -> dict[str, float]:
    process = psutil.Process(gateway_pid)
    await load(base, clients=32, requests=2000, stream=False)  # settle caches and pools first
    before = process.memory_info().rss
    half = requests // 2
    await load(base, clients=32, requests=half, stream=False)
    await load(base, clients=32, requests=requests - half, stream=True)
    after = process.memory_info().rss
    return {"requests": requests, "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
            "growth_pct": round((after - before) / before * 100, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario and side")
    parser.add_argument("--rss-requests", type=int, default=5000, help="requests for the RSS measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--apis", nargs="+", choices=["chat", "responses"], default=["chat", "responses"])
    parser.add_argument("--store", action="store_true", help="responses with store: true (a SQLite write each)")
    parser.add_argument("--responses-api", choices=["bridge", "native"], default="bridge",
                        help="native: /v1/responses passed through to the upstream's own route (not bridged); "
                        "a --baseline tree must know the key")
    parser.add_argument("--rounds", type=int, default=2, help="runs per scenario and side (the best is kept)")
    parser.add_argument("--baseline", type=Path, help="a source tree (e.g. a git worktree of an older commit) "
                        "served by a second gateway measured in the same run, for an A/B")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(args.upstream)
        return

    with tempfile.TemporaryDirectory(prefix="mindgate-bench-") as tmp:
        processes, bases = start_processes(Path(tmp), args.baseline, args.responses_api)
        sides = list(bases)  # direct, gateway[, baseline]: measured in turn, so drift hits all alike
        procs = {side: psutil.Process(p.pid) for side, p in processes.items()}
        try:
            rows = []
            for api, stream, clients in [(a, s, c) for a in args.apis for s in (False, True) for c in args.clients]:
                requests = args.requests if clients > 1 else max(200, args.requests // 4)
                runs: dict[str, list[Result]] = {side: [] for side in sides}
                for _ in range(args.rounds):  # keep each side's best run
                    for side in sides:
                        runs[side].append(measured(bases[side], procs[side], clients=clients, requests=requests,
                                                   stream=stream, api=api, store=args.store))
                best = {side: asdict(max(runs[side], key=lambda r: r.rps)) for side in sides}
                direct = best["direct"]
                row: dict[str, Any] = {"api": api, "stream": stream, "clients": clients, **best}
                for side, prefix in (("gateway", ""), ("baseline", "baseline_")):
                    if side in best:
                        row[prefix + "p50_overhead_ms"] = round(best[side]["p50_ms"] - direct["p50_ms"], 3)
                        row[prefix + "throughput_ratio"] = round(best[side]["rps"] / direct["rps"], 3)
                rows.append(row)
            memory = asyncio.run(rss_run(bases["gateway"], processes["gateway"].pid, args.rss_requests)) \
                if args.rss_requests else None
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                process.wait(timeout=60)

    baseline = any("baseline" in row for row in rows)
    header = f"{'api':<10}{'mode':<8}{'clients':>8}{'direct rps':>12}{'gw rps':>10}{'ratio':>8}{'direct p50':>12}" \
             f"{'gw p50':>9}{'overhead':>10}{'direct p99':>12}{'gw p99':>9}{'gw cpu/req':>12}" \
             + (f"{'base ratio':>12}{'base overhead':>15}{'base cpu/req':>14}" if baseline else "")
    print(header)
    print("-" * len(header))
    for row in rows:
        d, g = row["direct"], row["gateway"]
        line = f"{row['api']:<10}{'stream' if row['stream'] else 'json':<8}{row['clients']:>8}{d['rps']:>12.0f}" \
               f"{g['rps']:>10.0f}{row['throughput_ratio']:>8.2f}{d['p50_ms']:>11.2f}m{g['p50_ms']:>8.2f}m" \
               f"{row['p50_overhead_ms']:>9.2f}m{d['p99_ms']:>11.2f}m{g['p99_ms']:>8.2f}m{g['server_cpu_us']:>10.0f}us"
        if "baseline" in row:
            line += f"{row['baseline_throughput_ratio']:>12.2f}{row['baseline_p50_overhead_ms']:>14.2f}m" \
                    f"{row['baseline']['server_cpu_us']:>12.0f}us"
        print(line)
    if memory is not None:
        print(f"\nRSS over {memory['requests']} requests: {memory['rss_before_mb']} MB -> {memory['rss_after_mb']} MB "
              f"({memory['growth_pct']:+.2f}%)")
    summary = {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": sys.version.split()[0],
               "responses_api": args.responses_api,
               "scenarios": rows, "rss": memory,
               "uvloop": _installed("uvloop"), "httptools": _installed("httptools"),
               "targets": {"p50_overhead_ms_at_32": 1.0, "throughput_ratio": 0.8, "rss_growth_pct": 10.0}}
    print(json.dumps(summary, indent=2))
    errors = sum(row[side]["errors"] for row in rows for side in ("direct", "gateway", "baseline") if side in row)
    if errors:
        print(f"warning: {errors} requests failed", file=sys.stderr)


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
