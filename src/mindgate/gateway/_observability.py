"""Request ids, structured access logs and Prometheus metrics.

The front door (:mod:`._front`, the outermost layer) takes the caller's ``X-Request-Id`` when it is sane or
makes one (:func:`new_request_id`), returns it on every response, times the request to its last byte,
then :func:`record` counts it by route template (bounded label cardinality) and writes one JSON
access-log line to ``mindgate.access``. Log lines never hold message contents; routes add fields such as
the key name, model and token counts through :func:`annotate`.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mindgate._json import dumps

Scope = MutableMapping[str, Any]

access_log = logging.getLogger("mindgate.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# new request ids: 32 hex digits, a random per-process half and a counter (unique without a syscall each)
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count()
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def annotate(scope: Scope, **fields: Any) -> None:
    """Add fields to this request's access-log line (and metrics labels where they apply)."""
    scope.setdefault("state", {}).setdefault("log", {}).update(fields)


def request_id(scope: Scope) -> str | None:
    value = scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


class Metrics(Collector):
    """The gateway's counters, exposed through prometheus_client (text exposition format 0.0.4).

    Route handlers count into plain counters (``metrics.chats[(model, stream)] += 1``); request latency
    goes into a prometheus_client histogram. :meth:`render` adds the caller's extra metric families (router
    and process state, read at scrape time) and lets prometheus_client write the text.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency = Histogram("mindgate_request_duration_seconds", "Time from request to last response byte.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._latency_by_route: dict[str, Histogram] = {}
        self.tokens: Counter[tuple[str, str]] = Counter()
        self.chats: Counter[tuple[str, bool]] = Counter()
        self.memory_writes: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.upstream_errors: Counter[str] = Counter()
        self.started = time.time()
        self.registry.register(self)
        # called as observer(route, method, status, seconds) after each request (e.g. the /ui time series)
        self.observers: list[Callable[[str, str, int, float], None]] = []

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        child = self._latency_by_route.get(route)
        if child is None:  # ``labels()`` validates and locks on every call: once per route template
            child = self._latency_by_route[route] = self.latency.labels(route)
        child.observe(seconds)
        for observer in self.observers:
            observer(route, method, status, seconds)

    def observe_tokens(self, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens[(model, "prompt")] += prompt
        if completion:
            self.tokens[(model, "completion")] += completion

    def collect(self) -> Iterator[Metric]:
        """The counters as metric families (prometheus_client's Collector protocol)."""
        yield _counter("mindgate_requests", "HTTP requests by route template, method and status.",
                       ("route", "method", "status"), self.requests.items())
        yield _counter("mindgate_chat_completions", "Chat completions by requested model and streaming.",
                       ("model", "stream"), (((m, str(s).lower()), n) for (m, s), n in self.chats.items()))
        yield _counter("mindgate_tokens", "Tokens reported by upstream models (or estimated when not reported).",
                       ("model", "kind"), self.tokens.items())
        yield _counter("mindgate_upstream_errors", "Failed model calls by error code.", ("code",),
                       self.upstream_errors.items())
        yield _counter("mindgate_rate_limited", "Requests refused with 429 by API key name.", ("key",),
                       self.rate_limited.items())
        yield _counter("mindgate_memory_writes", "Background memory writes after chats, by outcome.", ("outcome",),
                       self.memory_writes.items())
        yield GaugeMetricFamily("mindgate_start_time_seconds", "Unix time the gateway started.", self.started)

    def render(self, extra: Iterable[Metric] = ()) -> str:
        """The exposition text of this gateway's metrics plus ``extra`` families."""
        families = list(extra)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed([*self.registry.collect(), *families]))
        return generate_latest(registry).decode("utf-8")


def _counter(name: str, help_text: str, label_names: Sequence[str], items: Iterable[tuple[Any, float]]
             ) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=list(label_names))
    for key, value in sorted(items, key=lambda item: tuple(map(str, item[0] if isinstance(item[0], tuple)
                                                               else (item[0],)))):
        values = key if isinstance(key, tuple) else (key,)
        family.add_metric([str(v) for v in values], value)
    return family


class _Fixed(Collector):
    """A collector of families already read (one scrape)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def new_request_id(header: bytes | None) -> str:
    """The caller's ``X-Request-Id`` value when it is sane (1-128 of ``A-Za-z0-9._:-``), else a new id."""
    if header is not None:
        candidate = header.decode("latin-1")
        if _REQUEST_ID.match(candidate):
            return candidate
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def record(metrics: Metrics, scope: Scope, rid: str, status: int, sent: int, elapsed: float) -> None:
    """Count a finished request in ``metrics`` and write its access-log line (``sent``: body bytes)."""
    route_obj = scope.get("route")
    route = getattr(route_obj, "path", None) or "unmatched"
    metrics.observe_request(route, scope["method"], status, elapsed)
    if access_log.isEnabledFor(logging.INFO):
        entry: dict[str, Any] = {"ts": round(time.time(), 3), "request_id": rid, "method": scope["method"],
                                 "path": scope["path"], "route": route, "status": status,
                                 "duration_ms": round(elapsed * 1000, 2), "bytes": sent}
        client = scope.get("client")
        if client:
            entry["client"] = client[0]
        entry.update(scope.get("state", {}).get("log", {}))
        try:
            line = dumps(entry).decode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate in an annotated field: escaped, not lost
            line = json.dumps(entry, separators=(",", ":"))
        handler = _line_handler()
        if handler is not None:
            handler.write_line(line)
        else:  # handle() without Logger.info's caller lookup (the line names its route; a frame walk adds nothing)
            access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "(access)", 0, line, (), None))


class LineHandler(logging.StreamHandler):
    """The gateway's log handler (``mindgate serve``): access-log records as their JSON line, everything else
    through its formatter. :func:`record` hands it access lines directly, without building a
    ``LogRecord``, when it is the only place they can go (see :func:`_line_handler`); the line written is
    the same."""

    def write_line(self, line: str) -> None:
        """Write one access-log line, as :meth:`emit` would write a record whose message is ``line``."""
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(line + self.terminator)
                self.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"name": access_log.name, "msg": line}))


def _line_handler() -> LineHandler | None:
    """The :class:`LineHandler` that every access-log record would reach and nothing else would see: the
    ``mindgate.access`` logger has no handlers or filters of its own and hands its records to its parent
    alone, whose one handler is a LineHandler without filters (the layout :func:`mindgate.gateway._server
    .configure_logging` sets up). Any other logging configuration gets ordinary records."""
    if access_log.handlers or access_log.filters or not access_log.propagate:
        return None
    parent = access_log.parent
    if parent is None or parent.propagate or parent.filters or len(parent.handlers) != 1:
        return None
    handler = parent.handlers[0]
    if type(handler) is not LineHandler or handler.filters or handler.level > logging.INFO:
        return None
    return handler
