"""Adversarial probes against a gateway on 127.0.0.1, with bounded counts, printing what each one found.

Two processes: the gateway (``mindgate serve``'s uvicorn setup, one worker, two API keys, memory over a
SQLite store pre-filled with ``--memories`` memories of one user, chat pointed at a closed port: no probe
needs a model) and this prober. The probes (the defects of issue 18):

* ``unauth``: POSTs of ``--unauth-mb`` MB without a key: time to the 401; an authenticated GET's p50
  alone and while two unauthenticated senders keep posting for ``--seconds``; an invalid body without
  a key (401, not a 400 that describes the body);
* ``filters``: an ``in`` list of 994 values and an ``OR`` of 494 terms (status, and whether the error
  body names the store's path);
* ``keepalive``: bursts from an httpx pool (5 s expiry) separated by ``--gaps`` gaps of 4.95-5.01 s
  (transport errors);
* ``loris``: ``--loris`` connections that never finish a request (connect-only, trickled headers,
  partial headers, half a body): how many the server closed, and how fast;
* ``overload``: connections beyond ``max_connections`` (503s with ``Retry-After``);
* ``ratelimit``: a key with 5 requests per minute on /v1/models, /ui/api/models?refresh=true, /metrics and
  an invalid chat (429s once over);
* ``docs``: /docs, /redoc, /openapi.json without a key;
* ``browser``: what a web page in the user's browser could send: a DNS-rebound ``Host`` and a foreign
  ``Origin`` (statuses, memories written), beside a plain client's request;
* ``search``: a 64-word query over the user's memories: p50/p99 alone, and /healthz p99 while 4 such
  searches run at once (the /healthz prober is a process of its own, as an orchestrator's liveness probe
  is), with the gateway's CPU time per search request (Linux). With ``--baseline-src``
  (the ``src`` folder of another checkout, e.g. ``git worktree add /tmp/base main~3``), a second gateway
  from that code serves the same store and the probe alternates between the two for ``--rounds`` rounds:
  on a shared machine, old and new code see the same load, and the table gives both medians and their
  ratio (new / baseline).

Usage: python bench/adversarial.py [--memories 10000] [--gaps 3] [--loris 200] [--max-connections 256]
                                  [--embedder minilm|hash] [--probes search ...] [--json]
       python bench/adversarial.py --probes search --baseline-src /tmp/base/src --rounds 3
       python bench/adversarial.py --memories 300 --gaps 1 --loris 8 --max-connections 24 --unauth-mb 1 \
           --seconds 1 --embedder hash --json                                (the CI setting)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from crash import child_env, free_port, make_embedder

ADMIN, LIMITED = "sk-adv-admin", "sk-adv-limited"
PROBES = ("docs", "ratelimit", "filters", "unauth", "browser", "search", "loris", "overload", "keepalive")
USER = "adv-user"
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0


def _config(db: str, max_connections: int) -> dict[str, Any]:
    return {
        "providers": {"closed": {"provider": "openai_compatible", "config": {
            "base_url": "http://127.0.0.1:9/v1", "model": "none", "timeout": 2}}},
        "routing": {"chains": {"main": {"targets": [{"endpoint": "closed"}]}}, "default": "main"},
        "vector_store": {"provider": "sqlite", "config": {"path": db}},
        "gateway": {"memory": False, "header_timeout_s": HEADER_TIMEOUT, "body_timeout_s": BODY_TIMEOUT,
                    "max_connections": max_connections, "api_keys": [
                        {"name": "admin", "key": ADMIN},
                        {"name": "limited", "key": LIMITED, "requests_per_minute": 5}]}}


# -- children --------------------------------------------------------------------------------------------


LONGMEMEVAL = "data/longmemeval/longmemeval_oracle.json.gz"


def texts(count: int) -> list[str]:
    """``count`` memory-sized texts (about 20 words) cut from LongMemEval's conversations (shared data:
    real English, so word frequencies and the embedder's token counts are those of real memories)."""
    for root in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        if (root / LONGMEMEVAL).is_file():
            path = root / LONGMEMEVAL
            break
    else:
        raise SystemExit(f"shared data file {LONGMEMEVAL} not found beside the checkout or in /work/shared")
    out: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for question in json.load(handle):
            for session in question["haystack_sessions"]:
                for turn in session:
                    words = str(turn["content"]).split()
                    out.extend(" ".join(words[i:i + 20]) for i in range(0, len(words) - 10, 20))
                    if len(out) >= count + 200:
                        return out
    return out


def fill_child(db: str, count: int, embedder_kind: str) -> None:
    """``count`` memories of one user, real text (:func:`texts`) with unit vectors of the embedder's shape
    (what vector search costs, not what the vectors mean)."""
    import numpy as np

    from mindgate._sync import run_sync
    from mindgate.memory.stores._base import AddChange, MemoryRecord, Scope, content_hash
    from mindgate.memory.stores._sqlite import SQLiteStore

    embedder = make_embedder(embedder_kind)
    identity = run_sync(embedder.aidentity())
    store = SQLiteStore(db)
    store.open(identity)
    corpus = texts(count)
    vectors = np.random.default_rng(11).standard_normal((count, identity.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    changes = []
    for i in range(count):
        text = corpus[i % len(corpus)]
        record = MemoryRecord(id=f"adv-{i:07d}", memory=text, hash=content_hash(text), scope=Scope(user_id=USER),
                              metadata={"i": i})
        changes.append(AddChange(record, vectors[i], actor="bench"))
        if len(changes) == 500:
            store.apply(changes)
            changes = []
    if changes:
        store.apply(changes)
    store.close()


def health_child(base: str) -> None:
    """GET /healthz every 5 ms on one keep-alive connection: prints ``ready`` once connected, reads the
    wall-clock time (``time.time()``) to stop at from stdin, then prints the latencies (s) as JSON."""
    import httpx

    out = []
    with httpx.Client(base_url=base, timeout=60) as client:
        client.get("/healthz")  # the connection opened before timing
        print("ready", flush=True)
        until = float(sys.stdin.readline())
        while time.time() < until:
            began = time.perf_counter()
            client.get("/healthz")
            out.append(time.perf_counter() - began)
            time.sleep(0.005)
    print(json.dumps(out))


def gateway_child(db: str, port: int, embedder_kind: str, max_connections: int) -> None:
    import uvicorn

    from mindgate.config import MindgateConfig
    from mindgate.gateway._app import create_app
    from mindgate.gateway._server import uvicorn_config

    config = MindgateConfig.from_dict(_config(db, max_connections))
    app = create_app(config, embedder=make_embedder(embedder_kind))
    uvicorn.Server(uvicorn_config(app, config, host="127.0.0.1", port=port, log_level="error")).run()


# -- probes ----------------------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def probe_unauth(base: str, megabytes: float, seconds: float) -> dict[str, Any]:
    import httpx

    body = b'{"model": "main", "messages": [' + b'{"role": "user", "content": "x"},' * int(megabytes * 30000) + b"]}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as anon, \
            httpx.AsyncClient(base_url=base, timeout=30, headers=_auth(ADMIN)) as admin:
        to_401 = []
        for _ in range(3):
            began = time.perf_counter()
            try:
                status = (await anon.post("/v1/chat/completions", content=body)).status_code
            except httpx.HTTPError:  # the server may close before the client finished sending
                status = 401
            to_401.append(time.perf_counter() - began)
        invalid = await anon.post("/v1/chat/completions", json={"model": 1, "messages": "no"})
        alone = []
        for _ in range(20):
            began = time.perf_counter()
            await admin.get("/v1/models")
            alone.append(time.perf_counter() - began)
        stop = time.monotonic() + seconds

        async def sender() -> int:
            sent = 0
            async with httpx.AsyncClient(base_url=base, timeout=30) as own:
                while time.monotonic() < stop:
                    with contextlib.suppress(httpx.HTTPError):
                        await own.post("/v1/chat/completions", content=body)
                    sent += 1
            return sent

        async def measured() -> list[float]:
            out = []
            while time.monotonic() < stop:
                began = time.perf_counter()
                await admin.get("/v1/models")
                out.append(time.perf_counter() - began)
                await asyncio.sleep(0.01)
            return out

        *sent, loaded = await asyncio.gather(sender(), sender(), measured())
    return {"body_mb": round(len(body) / 1e6, 2), "status": status, "to_401_ms_p50": _ms(to_401, 0.5),
            "invalid_body_status": invalid.status_code, "auth_get_p50_ms_alone": _ms(alone, 0.5),
            "auth_get_p50_ms_under_unauth_load": _ms(loaded, 0.5), "unauth_posts": sum(sent)}


async def probe_filters(base: str, store_dir: str) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=_auth(ADMIN)) as http:
        for name, flt in (("in_994", {"i": {"in": list(range(994))}}),
                          ("or_494", {"OR": [{"i": n} for n in range(494)]})):
            response = await http.get("/v1/memories", params={"user_id": USER, "limit": 5,
                                                              "filters": json.dumps(flt, separators=(",", ":"))})
            out[name] = {"status": response.status_code, "names_path": store_dir in response.text,
                         "message": response.json().get("error", {}).get("message", "")[:120]}
    return out


async def probe_keepalive(base: str, gaps: int) -> dict[str, Any]:
    import httpx

    errors = requests = 0
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=_auth(ADMIN)) as http:  # 5 s pool expiry
        for gap in range(gaps + 1):
            for _ in range(8):
                requests += 1
                try:
                    await http.get("/v1/models")
                except httpx.TransportError:
                    errors += 1
            if gap < gaps:
                await asyncio.sleep(4.95 + 0.06 * gap / max(1, gaps - 1))
    return {"gaps": gaps, "requests": requests, "transport_errors": errors}


def _closes(sock: socket.socket, deadline: float) -> float | None:
    """Seconds until the server closed ``sock`` (None if it did not before ``deadline``)."""
    started = time.monotonic()
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        while sock.recv(65536):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
    except OSError:
        return None if time.monotonic() >= deadline else time.monotonic() - started
    return time.monotonic() - started


def probe_loris(port: int, count: int) -> dict[str, Any]:
    kinds = {
        "connect_only": b"",
        "partial_headers": b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: ",
        "half_body": (b"POST /v1/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + ADMIN.encode() +
                      b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\": "),
        "trickled": b"GET /v1/models HTTP/1.1\r\n",
    }
    socks: list[tuple[str, socket.socket]] = []
    for i in range(count):
        kind = list(kinds)[i % len(kinds)]
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if kinds[kind]:
            sock.sendall(kinds[kind])
        socks.append((kind, sock))
    for _ in range(int(HEADER_TIMEOUT * 4)):  # trickle a header byte every 0.25 s
        for kind, sock in socks:
            if kind == "trickled":
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")
        time.sleep(0.25)
    deadline = time.monotonic() + HEADER_TIMEOUT + BODY_TIMEOUT + 2
    closed: dict[str, int] = dict.fromkeys(kinds, 0)
    waits = []
    for kind, sock in socks:
        after = _closes(sock, deadline)
        if after is not None:
            closed[kind] += 1
            waits.append(after)
        sock.close()
    return {"connections": count, "closed_by_server": sum(closed.values()), "closed_by_kind": closed}


def probe_overload(port: int, max_connections: int) -> dict[str, Any]:
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(max_connections)]
    time.sleep(0.3)
    statuses = []
    retry_after = 0
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = sock.recv(65536).split(b"\r\n\r\n")[0].lower()
            statuses.append(int(head.split()[1]) if head else 0)
            retry_after += b"retry-after:" in head
    for sock in held:
        sock.close()
    return {"held": max_connections, "extra_requests": 5, "503s": statuses.count(503), "with_retry_after": retry_after}


async def probe_ratelimit(base: str) -> dict[str, Any]:
    import httpx

    calls = [("GET", "/v1/models", None), ("GET", "/ui/api/models?refresh=true", None), ("GET", "/metrics", None),
             ("POST", "/v1/chat/completions", {"model": 1})]
    statuses = []
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=_auth(ADMIN)) as admin:
        await admin.get("/ui/api/models")  # the dashboard's first use builds its model manager (seconds)
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=_auth(LIMITED)) as http:
        for i in range(8):
            method, path, body = calls[i % len(calls)]
            statuses.append((await http.request(method, path, json=body)).status_code)
    return {"statuses": statuses, "429s": statuses.count(429)}


async def probe_docs(base: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=30) as anon:
        return {path: (await anon.get(path)).status_code for path in ("/docs", "/redoc", "/openapi.json")}


async def probe_browser(base: str, port: int) -> dict[str, Any]:
    import httpx

    write = json.dumps({"messages": "planted by a web page", "user_id": "adv-browser", "infer": False})
    plain = {"Content-Type": "text/plain", **_auth(ADMIN)}  # a "simple" request: no CORS preflight
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        rebound = await http.post("/v1/memories", content=write, headers={**plain, "Host": f"rebound.example:{port}"})
        foreign = await http.post("/v1/memories", content=write, headers={**plain, "Origin": "https://evil.example"})
        client = await http.get("/v1/models", headers=_auth(ADMIN))
        kept = await http.get("/v1/memories", params={"user_id": "adv-browser"}, headers=_auth(ADMIN))
    return {"rebound_host_status": rebound.status_code, "foreign_origin_status": foreign.status_code,
            "plain_client_status": client.status_code, "memories_written": len(kept.json()["results"])}


async def probe_search(base: str, seconds: float, memories: int) -> dict[str, Any]:
    import httpx

    query = " ".join(" ".join(texts(memories)[memories:]).split()[:64])  # real text, not among the memories
    body = {"query": query, "user_id": USER, "limit": 10}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=_auth(ADMIN)) as http:
        await http.post("/v1/memories/search", json=body)  # warm-up
        alone = []
        for _ in range(15):
            began = time.perf_counter()
            response = await http.post("/v1/memories/search", json=body)
            alone.append(time.perf_counter() - began)
        found = len(response.json()["results"])
        # the liveness prober is its own process, as an orchestrator's probe is: in this process its timings
        # would include the waits of an event loop busy with the 4 searchers' responses
        prober = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--child", "health", base,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert prober.stdout is not None
        await prober.stdout.readline()  # started and connected
        stop = time.time() + seconds  # wall clock: the prober stops at the same moment

        async def searcher() -> int:
            n = 0
            async with httpx.AsyncClient(base_url=base, timeout=60, headers=_auth(ADMIN)) as own:
                while time.time() < stop:
                    await own.post("/v1/memories/search", json=body)
                    n += 1
            return n

        counts, (out, _) = await asyncio.gather(asyncio.gather(*(searcher() for _ in range(4))),
                                                prober.communicate(f"{stop!r}\n".encode()))
        healthz = json.loads(out)
    return {"query_words": 64, "results": found, "search_p50_ms": _ms(alone, 0.5), "search_p99_ms": _ms(alone, 0.99),
            "concurrent_searches": sum(counts), "healthz_probes": len(healthz), "healthz_p50_ms": _ms(healthz, 0.5),
            "healthz_p99_ms_under_4_searches": _ms(healthz, 0.99)}


# -- main ------------------------------------------------------------------------------------------------


def _wait_up(base: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the gateway exited during start-up")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the gateway did not start")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux's /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_search(base: str, pid: int, seconds: float, memories: int) -> dict[str, Any]:
    """:func:`probe_search` plus the gateway's CPU milliseconds per search request it served, once the
    gateway's start-up work (loading the embedder) is over."""
    _settle([pid])
    before = _cpu_seconds(pid)
    result = asyncio.run(probe_search(base, seconds, memories))
    after = _cpu_seconds(pid)
    if before is not None and after is not None:
        requests = result["concurrent_searches"] + 16  # the warm-up and the 15 timed alone
        result["gateway_cpu_ms_per_search"] = round(1000 * (after - before) / requests, 2)
    return result


def _settle(pids: list[int], timeout: float = 90.0) -> None:
    """Wait until none of ``pids`` used more than 5 % of a core over one second (start-up work such as
    loading the embedder done), so that it is not counted in a measured round."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [_cpu_seconds(pid) or 0.0 for pid in pids]
        time.sleep(1.0)
        if all((_cpu_seconds(pid) or 0.0) - b <= 0.05 for pid, b in zip(pids, before, strict=True)):
            return


def search_ab(args: argparse.Namespace, new: tuple[str, int], baseline: tuple[str, int]) -> dict[str, Any]:
    """The search probe alternated between two gateways for ``args.rounds`` rounds: medians and ratios."""
    import statistics

    _settle([new[1], baseline[1]])
    runs: dict[str, list[dict[str, Any]]] = {"new": [], "baseline": []}
    for i in range(args.rounds):
        order = [("new", new), ("baseline", baseline)] if i % 2 == 0 else [("baseline", baseline), ("new", new)]
        for name, (base, pid) in order:
            runs[name].append({**measured_search(base, pid, args.seconds, args.memories),
                               "load": round(os.getloadavg()[0], 1)})
    out: dict[str, Any] = {"rounds": args.rounds}
    for name, results in runs.items():
        out[name] = {key: round(statistics.median(r[key] for r in results), 2)
                     for key in results[0] if isinstance(results[0][key], int | float)}
        out[name + "_runs"] = results
    out["ratio_new_to_baseline"] = {key: round(value / out["baseline"][key], 3)
                                    for key, value in out["new"].items()
                                    if key != "load" and out["baseline"].get(key)}
    return out


def _gateway(me: str, db: str, port: int, args: argparse.Namespace, log: Any, src: str | None) -> Any:
    env = child_env()
    if src is not None:
        env["PYTHONPATH"] = src
    return subprocess.Popen([sys.executable, me, "--child", "gateway", db, str(port), args.embedder,
                             str(args.max_connections)], stdout=log, stderr=subprocess.STDOUT, env=env)


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mindgate-adversarial-"))
    db = args.db or str(workdir / "memory.db")
    me = str(Path(__file__).resolve())
    began = time.perf_counter()
    if not Path(db).exists():
        subprocess.run([sys.executable, me, "--child", "fill", db, str(args.memories), args.embedder], check=True,
                       env=child_env())
    filled = time.perf_counter() - began
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (workdir / "gateway.log").open("wb")
    proc = _gateway(me, db, port, args, log, None)
    old = None
    old_log = (workdir / "baseline.log").open("wb")
    if args.baseline_src:
        old_port = free_port()
        old = _gateway(me, db, old_port, args, old_log, args.baseline_src)
    try:
        _wait_up(base, proc)
        if old is not None:
            _wait_up(f"http://127.0.0.1:{old_port}", old)
        results: dict[str, Any] = {"memories": args.memories, "embedder": args.embedder,
                                   "fill_seconds": round(filled, 1)}
        probes: dict[str, Callable[[], Any]] = {
            "docs": lambda: asyncio.run(probe_docs(base)),
            "ratelimit": lambda: asyncio.run(probe_ratelimit(base)),
            "filters": lambda: asyncio.run(probe_filters(base, str(workdir))),
            "unauth": lambda: asyncio.run(probe_unauth(base, args.unauth_mb, args.seconds)),
            "browser": lambda: asyncio.run(probe_browser(base, port)),
            "search": lambda: (search_ab(args, (base, proc.pid), (f"http://127.0.0.1:{old_port}", old.pid))
                               if old is not None else measured_search(base, proc.pid, args.seconds, args.memories)),
            "loris": lambda: probe_loris(port, args.loris),
            "overload": lambda: probe_overload(port, args.max_connections),
            "keepalive": lambda: asyncio.run(probe_keepalive(base, args.gaps)),
        }
        for name in args.probes or list(probes):
            results[name] = probes[name]()
        results["gateway_alive"] = proc.poll() is None
        return results
    finally:
        for child in (proc, old):
            if child is not None:
                child.terminate()
                child.wait(timeout=30)
        log.close()
        old_log.close()


def table(results: dict[str, Any]) -> str:
    rows = [("probe", "figure", "value")]
    for probe, values in results.items():
        if isinstance(values, dict):
            for key, value in values.items():
                rows.append((probe, key, json.dumps(value) if isinstance(value, dict | list) else str(value)))
        else:
            rows.append(("run", probe, str(values)))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "fill":
            fill_child(rest[0], int(rest[1]), rest[2])
        elif kind == "health":
            health_child(rest[0])
        else:
            gateway_child(rest[0], int(rest[1]), rest[2], int(rest[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--gaps", type=int, default=3, help="keep-alive gaps of ~5 s")
    parser.add_argument("--loris", type=int, default=200, help="connections that never finish a request")
    parser.add_argument("--unauth-mb", type=float, default=7.9)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each concurrent phase")
    parser.add_argument("--max-connections", type=int, default=256, help="the gateway's gateway.max_connections")
    parser.add_argument("--embedder", choices=["minilm", "hash"], default="minilm")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--probes", nargs="+", choices=PROBES, help="run only these probes (default: all)")
    parser.add_argument("--baseline-src", help="the src folder of a baseline checkout: the search probe "
                                               "alternates between its gateway and this one")
    parser.add_argument("--db", help="the store to probe: kept and reused when it exists (filled with --memories "
                                     "memories of --embedder when it does not); default: a new temporary one")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the alternated search probe")
    args = parser.parse_args()
    if args.loris > args.max_connections - 8:
        parser.error(f"--loris must leave room under --max-connections (at most {args.max_connections - 8})")
    results = run(args)
    print(table(results))
    if args.json:
        print(json.dumps(results, separators=(",", ":")))


if __name__ == "__main__":
    main()
