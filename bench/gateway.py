"""Gateway overhead: the same load sent straight to an upstream and through ``mindgate serve``, in one run.

Three processes on loopback: a minimal fast OpenAI-compatible upstream (raw asyncio, canned answers, this
file's ``--upstream`` mode), the real gateway started with ``mindgate serve`` and a config whose ``llm``
is that upstream (so requests go through the real route, router and provider client, with access logging
on, written to a file), and this load generator. For each API (``chat``: ``/v1/chat/completions``;
``responses``: ``/v1/responses``, which the upstream serves itself, as LM Studio, vLLM and Ollama do, while
the gateway bridges it onto the upstream's chat completions, or with ``--responses-api native`` passes it
through to the upstream's own route), non-streaming and streaming (8 content chunks), it reports
requests/s and p50/p99 latency direct and through the gateway, the p50 overhead and the throughput ratio;
then the gateway's RSS over a long run. Responses requests are sent with ``store: false`` (``--store``
keeps them, which adds a SQLite write per request).

Two kinds of scenario, each measuring one target (2 cores):

* **1 client, instant upstream: the p50 overhead (target <= 1 ms).** httpx, as the SDKs send requests.
  The upstream answers at once, so the difference in p50 is the gateway's work on the request's path.
* **32 (and 256) clients: the throughput ratio (target >= 0.8 of direct).** A light load client
  (:func:`raw_load`: kept-alive sockets, tens of µs per request; the httpx client tops out at ~200-300
  requests/s on either side, so it measured itself) against the upstream at each ``--service-ms``:
  ``0``, the canned answer at once, gives the gateway's capacity (the direct side serves 15-60k
  requests/s, far beyond any model server); ``50`` is a model-like service time (the requested model
  ``bench-50ms`` answers after 50 ms, a stream's events spread over it; 32 clients then ask ~640
  requests/s and, streaming, ~5,800 events/s of the gateway). The ratio at a service time says whether
  the gateway keeps up with an upstream that fast.

Usage: python bench/gateway.py [--requests 2000] [--rss-requests 5000] [--apis chat responses]
[--service-ms 0 50] [--load-client raw|httpx] [--baseline DIR] (``--rss-requests 50000`` for the full
memory run, ``0`` to skip it). Prints a table, then JSON. ``--baseline DIR`` serves a second gateway from
another source tree (``DIR/src`` and ``DIR/pyproject.toml``, e.g. ``git worktree add /tmp/base main``),
measured in turn with the first in the same run: an A/B that a busy machine's drift hits alike;
``gw cpu/req`` and ``base cpu/req`` are each gateway's CPU time per request.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

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


def _canned(service_ms: Sequence[float] = ()) -> tuple[bytes, bytes, bytes]:
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
    models = {"object": "list", "data": [{"id": service_model(ms), "object": "model", "created": 0, "owned_by": "bench"}
                                         for ms in [0.0, *service_ms]]}
    return (_http("200 OK", b"application/json", json.dumps(completion).encode()),
            _http("200 OK", b"text/event-stream", sse),
            _http("200 OK", b"application/json", json.dumps(models).encode()))


SERVICE_MS = re.compile(rb'"model":\s*"bench-(\d+)ms"')


def service_model(service_ms: float) -> str:
    """The model name that asks the upstream for ``service_ms`` of service time (``bench``: none)."""
    return f"bench-{round(service_ms)}ms" if service_ms else "bench"


def _pieces(answer: bytes) -> list[bytes]:
    """A canned stream cut where its events end: the head with the first event, then one piece per event."""
    parts = answer.split(b"\n\n")
    pieces = [part + b"\n\n" for part in parts[:-1]]
    pieces[-1] += parts[-1]
    return pieces


class Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one canned answer per request: as little work per request as Python allows.

    A request for the model ``bench-<N>ms`` (listed by ``GET /v1/models`` for each N the upstream was
    started with, so the gateway routes that name to it as a loaded model) is answered as a model would
    be: a JSON answer after N ms, a stream's events spread evenly over N ms; requests on different
    connections are served concurrently. A request for ``bench`` is answered at once."""

    COMPLETION, STREAM, MODELS = _canned()
    RESPONSE, RESPONSE_STREAM = _canned_responses()
    PIECES: ClassVar[dict[bytes, list[bytes]]] = {STREAM: _pieces(STREAM),
                                                  RESPONSE_STREAM: _pieces(RESPONSE_STREAM)}

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
                answer = self.MODELS
            elif head.startswith(b"POST /v1/responses"):
                answer = self.RESPONSE_STREAM if stream else self.RESPONSE
            else:
                answer = self.STREAM if stream else self.COMPLETION
            service = SERVICE_MS.search(body)
            if service is None:
                self.transport.write(answer)
            else:
                self._serve(answer, float(service.group(1)) / 1000)

    def _serve(self, answer: bytes, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        pieces = self.PIECES.get(answer, [answer])
        for n, piece in enumerate(pieces, 1):
            loop.call_later(seconds * n / len(pieces), self._write, piece)

    def _write(self, piece: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(piece)


def run_upstream(port: int, service_ms: Sequence[float]) -> None:
    Upstream.MODELS = _canned(service_ms)[2]
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
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
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
        # requests name the upstream's bench-<N>ms models (an OpenAI-compatible server's listing does not say
        # which are loaded, so the allowlist would refuse them)
        "gateway": {"allow_any_model": True},
    }))
    env = {**os.environ, "MINDGATE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    log = (home / "gateway.log").open("wb")
    gateway = subprocess.Popen([sys.executable, "-m", "mindgate.cli", "serve", "--port", str(port),
                                "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_http(f"http://127.0.0.1:{port}/readyz", gateway)
    return gateway, f"http://127.0.0.1:{port}/v1"


def start_processes(workdir: Path, baseline: Path | None = None, responses_api: str = "bridge",
                    service_ms: Sequence[float] = ()
                    ) -> tuple[dict[str, subprocess.Popen[bytes]], dict[str, str]]:
    """The upstream, the gateway and (with ``baseline``) the baseline gateway: processes and base URLs."""
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(up_port), "--service-ms",
                                 *map(str, service_ms or [0])], stdout=subprocess.PIPE)
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
             api: str = "chat", store: bool = False, service_ms: float = 0.0, raw: bool = False) -> Result:
    """One load run (:func:`load` with httpx, or :func:`raw_load` with ``raw``), plus the server process's CPU
    time per request."""
    before = sum(server.cpu_times()[:2])
    if raw:
        result = _run(raw_load(base, clients=clients, requests=requests, stream=stream, api=api, store=store,
                               service_ms=service_ms))
    else:
        result = _run(load(base, clients=clients, requests=requests, stream=stream, api=api, store=store,
                           service_ms=service_ms))
    result.server_cpu_us = round((sum(server.cpu_times()[:2]) - before) / max(1, result.requests) * 1e6, 1)
    return result


def _run(main: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _request_body(api: str, stream: bool, store: bool, service_ms: float) -> tuple[str, dict[str, object]]:
    """The path (under the base URL) and body of the scenario's request."""
    model = service_model(service_ms)
    if api == "responses":
        return "/responses", {"model": model, "input": PROMPT[0]["content"], "max_output_tokens": 16,
                              "stream": stream, "store": store}
    return "/chat/completions", {"model": model, "messages": PROMPT, "max_tokens": 16, "stream": stream}


def _result(latencies: list[float], elapsed: float, errors: int) -> Result:
    if not latencies:
        return Result(0, round(elapsed, 3), 0.0, 0.0, 0.0, errors)
    return Result(len(latencies), round(elapsed, 3), round(len(latencies) / elapsed, 1),
                  round(_percentile(latencies, 0.50) * 1000, 3), round(_percentile(latencies, 0.99) * 1000, 3),
                  errors)


async def load(base: str, *, clients: int, requests: int, stream: bool, api: str = "chat",
               store: bool = False, service_ms: float = 0.0) -> Result:
    """``requests`` requests from ``clients`` concurrent httpx clients (as the SDKs send them), after two
    warm-up requests per client."""
    path, body = _request_body(api, stream, store, service_ms)
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
    return _result(latencies, elapsed, errors)


async def raw_load(base: str, *, clients: int, requests: int, stream: bool, api: str = "chat",
                   store: bool = False, service_ms: float = 0.0) -> Result:
    """The load of :func:`load` from a light client: one kept-alive connection per client, the request's
    bytes made once, each answer read by its Content-Length or its chunks. It costs a few tens of µs per
    request (httpx: ~1 ms), so at 32 clients it measures the server, not itself."""
    url = httpx.URL(base)
    path, body = _request_body(api, stream, store, service_ms)
    payload = json.dumps(body).encode()
    request = (f"POST {url.path}{path} HTTP/1.1\r\nhost: {url.host}:{url.port}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n").encode() + payload
    latencies: list[float] = []
    errors = 0

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = CONTENT_LENGTH.search(head)
        if length is not None:
            await reader.readexactly(int(length.group(1)))
        else:  # chunked
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        return head.startswith(b"HTTP/1.1 200")

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        for _ in range(2):  # warm-up, not counted
            await exchange(reader, writer)
        return reader, writer

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        nonlocal errors
        try:
            for _ in range(n):
                started = time.perf_counter()
                ok = await exchange(reader, writer)
                latencies.append(time.perf_counter() - started)
                errors += not ok
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        finally:
            writer.close()

    connections = await asyncio.gather(*(connect() for _ in range(clients)))
    per_client = max(1, requests // clients)
    started = time.perf_counter()
    await asyncio.gather(*(client(reader, writer, per_client) for reader, writer in connections))
    return _result(latencies, time.perf_counter() - started, errors)


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


def scenarios(args: argparse.Namespace) -> list[tuple[str, bool, int, float]]:
    """``(api, stream, clients, service_ms)`` of each scenario: 1 client with the instant upstream (the p50
    overhead), more clients at each ``--service-ms`` (the throughput ratio)."""
    return [(api, stream, clients, service)
            for api in args.apis for stream in (False, True) for clients in args.clients
            for service in ([0.0] if clients == 1 else args.service_ms)]


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
    parser.add_argument("--service-ms", type=float, nargs="+", default=[0.0, 50.0],
                        help="the upstream's service time per request in the concurrent scenarios (0: the canned "
                        "answer at once, which measures the gateway's capacity; 50: a model-like time); the "
                        "1-client scenarios always use 0")
    parser.add_argument("--load-client", choices=["raw", "httpx"], default="raw",
                        help="the load generator of the concurrent scenarios (httpx is itself the bottleneck "
                        "at 32 clients)")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(args.upstream, args.service_ms)
        return

    with tempfile.TemporaryDirectory(prefix="mindgate-bench-") as tmp:
        processes, bases = start_processes(Path(tmp), args.baseline, args.responses_api, args.service_ms)
        sides = list(bases)  # direct, gateway[, baseline]: measured in turn, so drift hits all alike
        procs = {side: psutil.Process(p.pid) for side, p in processes.items()}
        try:
            rows = []
            for api, stream, clients, service_ms in scenarios(args):
                requests = args.requests if clients > 1 else max(200, args.requests // 4)
                raw = clients > 1 and args.load_client == "raw"
                runs: dict[str, list[Result]] = {side: [] for side in sides}
                for _ in range(args.rounds):  # keep each side's best run
                    for side in sides:
                        runs[side].append(measured(bases[side], procs[side], clients=clients, requests=requests,
                                                   stream=stream, api=api, store=args.store, service_ms=service_ms,
                                                   raw=raw))
                best = {side: asdict(max(runs[side], key=lambda r: r.rps)) for side in sides}
                direct = best["direct"]
                row: dict[str, Any] = {"api": api, "stream": stream, "clients": clients, "service_ms": service_ms,
                                       "load_client": "raw" if raw else "httpx", **best}
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
    header = f"{'api':<10}{'mode':<8}{'clients':>8}{'service':>8}{'direct rps':>12}{'gw rps':>10}{'ratio':>8}" \
             f"{'direct p50':>12}" \
             f"{'gw p50':>9}{'overhead':>10}{'direct p99':>12}{'gw p99':>9}{'gw cpu/req':>12}" \
             + (f"{'base ratio':>12}{'base overhead':>15}{'base cpu/req':>14}" if baseline else "")
    print(header)
    print("-" * len(header))
    for row in rows:
        d, g = row["direct"], row["gateway"]
        line = f"{row['api']:<10}{'stream' if row['stream'] else 'json':<8}{row['clients']:>8}" \
               f"{row['service_ms']:>6.0f}ms{d['rps']:>12.0f}" \
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
               "targets": {"p50_overhead_ms_at_1": 1.0, "throughput_ratio_at_32": 0.8, "rss_growth_pct": 10.0}}
    print(json.dumps(summary, indent=2))
    errors = sum(row[side]["errors"] for row in rows for side in ("direct", "gateway", "baseline") if side in row)
    if errors:
        print(f"warning: {errors} requests failed", file=sys.stderr)


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
