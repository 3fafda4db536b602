"""The last hour of API traffic in per-minute buckets, for the dashboard's plot (``/ui/api/timeseries``).

Contract:

* :meth:`TrafficSeries.observe` is a :attr:`~mindgate.gateway._observability.Metrics.observers` hook: it is
  called once per finished HTTP request and counts only API routes (``/v1/...``), so the dashboard's own
  polling, ``/metrics`` and health probes do not drown the traffic they are meant to show.
* Each minute keeps its request count, its 5xx count, and a bounded latency sample (reservoir sampling, at
  most ``SAMPLES_PER_MINUTE`` values) from which p50 and p99 are computed: exact below that many requests a
  minute, an unbiased sample above it. Memory is bounded by ``window / step`` buckets.
* Fallbacks (answers served by a chain's second or later target, as ``mindgate_fallbacks_total`` counts
  them) come from the routers' cumulative counters, read through ``fallback_total`` at most once per
  ``FALLBACK_SAMPLE_S`` seconds on the request path and always when a snapshot is taken; a minute's
  fallbacks are the growth of that total during the minute.
"""

from __future__ import annotations

import random
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SAMPLES_PER_MINUTE = 2048
FALLBACK_SAMPLE_S = 2.0


@dataclass
class _Bucket:
    minute: int
    requests: int = 0
    errors: int = 0
    seen: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    fallback_mark: int | None = None


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class TrafficSeries:
    """Requests, errors, latency p50/p99 and fallbacks per minute over the last ``window`` seconds."""

    def __init__(self, *, window: int = 3600, step: int = 60, fallback_total: Callable[[], int] | None = None,
                 clock: Callable[[], float] = time.time, prefix: str = "/v1/") -> None:
        self.window = window
        self.step = step
        self.prefix = prefix
        self._fallback_total = fallback_total
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._baseline = self._read_fallbacks() or 0
        self._last_sample = float("-inf")

    def _read_fallbacks(self) -> int | None:
        if self._fallback_total is None:
            return None
        try:
            return int(self._fallback_total())
        except Exception:  # a router mid-reconfiguration must not fail a request; the next read catches up
            return None

    def _bucket(self, now: float) -> _Bucket:
        minute = int(now // self.step)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = _Bucket(minute)
            oldest = minute - self.window // self.step
            for stale in sorted(m for m in self._buckets if m <= oldest):
                mark = self._buckets.pop(stale).fallback_mark
                self._baseline = mark if mark is not None else self._baseline
        return bucket

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """The :class:`~mindgate.gateway._observability.Metrics` observer hook."""
        if not route.startswith(self.prefix):
            return
        now = self._clock()
        with self._lock:
            bucket = self._bucket(now)
            bucket.requests += 1
            if status >= 500:
                bucket.errors += 1
            bucket.seen += 1
            if len(bucket.latencies) < SAMPLES_PER_MINUTE:
                bucket.latencies.append(seconds)
            else:
                slot = self._rng.randrange(bucket.seen)
                if slot < SAMPLES_PER_MINUTE:
                    bucket.latencies[slot] = seconds
            sample = now - self._last_sample >= FALLBACK_SAMPLE_S
            if sample:
                self._last_sample = now
        if sample:
            self._mark_fallbacks(now)

    def _mark_fallbacks(self, now: float) -> None:
        total = self._read_fallbacks()
        if total is None:
            return
        with self._lock:
            self._bucket(now).fallback_mark = total

    def snapshot(self) -> dict[str, Any]:
        """Every minute of the window, oldest first (empty minutes included), as JSON-ready dicts:
        ``{"step", "window", "now", "points": [{"t", "requests", "errors", "p50_ms", "p99_ms",
        "fallbacks"}]}`` where ``t`` is the minute's start (Unix seconds)."""
        now = self._clock()
        self._mark_fallbacks(now)
        with self._lock:
            current = int(now // self.step)
            count = self.window // self.step
            first = current - count + 1
            previous = self._baseline
            for minute in sorted(m for m in self._buckets if m < first):
                mark = self._buckets[minute].fallback_mark
                previous = mark if mark is not None else previous
            points = []
            for minute in range(first, current + 1):
                bucket = self._buckets.get(minute)
                point: dict[str, Any] = {"t": minute * self.step, "requests": 0, "errors": 0, "p50_ms": None,
                                         "p99_ms": None, "fallbacks": 0}
                if bucket is not None:
                    point.update(requests=bucket.requests, errors=bucket.errors)
                    if bucket.latencies:
                        ordered = sorted(bucket.latencies)
                        point.update(p50_ms=round(_percentile(ordered, 0.50) * 1000, 3),
                                     p99_ms=round(_percentile(ordered, 0.99) * 1000, 3))
                    if bucket.fallback_mark is not None:
                        point["fallbacks"] = max(0, bucket.fallback_mark - previous)
                        previous = bucket.fallback_mark
                points.append(point)
        return {"step": self.step, "window": self.window, "now": now, "points": points}


def router_fallbacks(models: Callable[[], dict[str, Any]]) -> Callable[[], int]:
    """A ``fallback_total`` reading every router among ``models()``: successes of targets after the first."""

    def total() -> int:
        count = 0
        for model in models().values():
            status = getattr(model, "status", None)
            if callable(status):
                count += sum(int(row.get("successes", 0)) for row in status()[1:])
        return count

    return total
