"""Request ids, structured access logs and Prometheus metrics.

:class:`Observability` is a pure ASGI middleware (outermost): it takes the caller's ``X-Request-Id`` when
it is sane or makes one, returns it on every response, times the request to its last byte, counts it by
route template (bounded label cardinality) and writes one JSON access-log line to ``mindgate.access``.
Log lines never hold message contents; routes add fields such as the key name, model and token counts
through :func:`annotate`.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("mindgate.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def annotate(scope: Scope, **fields: Any) -> None:
    """Add fields to this request's access-log line (and metrics labels where they apply)."""
    scope.setdefault("state", {}).setdefault("log", {}).update(fields)


def request_id(scope: Scope) -> str | None:
    value = scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


def labels(**values: Any) -> str:
    """Prometheus label set text, escaped: ``{a="1",b="2"}`` (empty string for none)."""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in values.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters kept in this process and rendered as Prometheus text (exposition format 0.0.4)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.tokens: Counter[tuple[str, str]] = Counter()
        self.chats: Counter[tuple[str, bool]] = Counter()
        self.memory_writes: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.upstream_errors: Counter[str] = Counter()
        self.started = time.time()
        # called as observer(route, method, status, seconds) after each request (e.g. the /ui time series)
        self.observers: list[Callable[[str, str, int, float], None]] = []

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = Histogram()
        histogram.observe(seconds)
        for observer in self.observers:
            observer(route, method, status, seconds)

    def observe_tokens(self, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens[(model, "prompt")] += prompt
        if completion:
            self.tokens[(model, "completion")] += completion

    def render(self, extra: Iterable[str] = ()) -> str:
        out: list[str] = []
        add = out.append
        add("# HELP mindgate_requests_total HTTP requests by route template, method and status.")
        add("# TYPE mindgate_requests_total counter")
        for (route, method, status), n in sorted(self.requests.items()):
            add(f"mindgate_requests_total{labels(route=route, method=method, status=status)} {n}")
        add("# HELP mindgate_request_duration_seconds Time from request to last response byte.")
        add("# TYPE mindgate_request_duration_seconds histogram")
        for route, h in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip((*h.buckets, float("inf")), h.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                add(f"mindgate_request_duration_seconds_bucket{labels(route=route, le=le)} {cumulative}")
            add(f"mindgate_request_duration_seconds_sum{labels(route=route)} {h.total:.6f}")
            add(f"mindgate_request_duration_seconds_count{labels(route=route)} {h.n}")
        add("# HELP mindgate_chat_completions_total Chat completions by requested model and streaming.")
        add("# TYPE mindgate_chat_completions_total counter")
        for (model, stream), n in sorted(self.chats.items()):
            add(f"mindgate_chat_completions_total{labels(model=model, stream=str(stream).lower())} {n}")
        add("# HELP mindgate_tokens_total Tokens reported by upstream models (or estimated when not reported).")
        add("# TYPE mindgate_tokens_total counter")
        for (model, kind), n in sorted(self.tokens.items()):
            add(f"mindgate_tokens_total{labels(model=model, kind=kind)} {n}")
        add("# HELP mindgate_upstream_errors_total Failed model calls by error code.")
        add("# TYPE mindgate_upstream_errors_total counter")
        for code, n in sorted(self.upstream_errors.items()):
            add(f"mindgate_upstream_errors_total{labels(code=code)} {n}")
        add("# HELP mindgate_rate_limited_total Requests refused with 429 by API key name.")
        add("# TYPE mindgate_rate_limited_total counter")
        for key, n in sorted(self.rate_limited.items()):
            add(f"mindgate_rate_limited_total{labels(key=key)} {n}")
        add("# HELP mindgate_memory_writes_total Background memory writes after chats, by outcome.")
        add("# TYPE mindgate_memory_writes_total counter")
        for outcome, n in sorted(self.memory_writes.items()):
            add(f"mindgate_memory_writes_total{labels(outcome=outcome)} {n}")
        out.extend(extra)
        add("# HELP mindgate_start_time_seconds Unix time the gateway started.")
        add("# TYPE mindgate_start_time_seconds gauge")
        add(f"mindgate_start_time_seconds {self.started:.3f}")
        return "\n".join(out) + "\n"


class Observability:
    """Outermost ASGI middleware: request id, timing, metrics, access log."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                rid = candidate if _REQUEST_ID.match(candidate) else None
                break
        rid = rid or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        header = (b"x-request-id", rid.encode("latin-1"))
        status = 500
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                entry: dict[str, Any] = {"ts": round(time.time(), 3), "request_id": rid, "method": scope["method"],
                                         "path": scope["path"], "route": route, "status": status,
                                         "duration_ms": round(elapsed * 1000, 2), "bytes": sent}
                client = scope.get("client")
                if client:
                    entry["client"] = client[0]
                entry.update(state.get("log", {}))
                access_log.info(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
