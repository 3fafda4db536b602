"""The dashboard's traffic series (per-minute requests, 5xx, latency p50/p99, fallbacks over an hour) fed
through its Metrics observer hook with a controlled clock, and an hour of it drawn by the real browser."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from mindgate.gateway._observability import Metrics
from mindgate.gateway._ui_timeseries import SAMPLES_PER_MINUTE, TrafficSeries
from ui_harness import MOBILE, browser, dashboard, page_factory, screenshot, sign_in

__all__ = ["browser", "dashboard", "page_factory"]

T0 = 1_700_000_000 - 1_700_000_000 % 60  # a minute boundary


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Fallbacks:
    def __init__(self) -> None:
        self.total = 0
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.total


def test_counts_api_routes_per_minute_with_exact_percentiles() -> None:
    clock = Clock(T0 + 5)
    series = TrafficSeries(clock=clock)
    metrics = Metrics()
    metrics.observers.append(series.observe)
    for ms in range(1, 101):
        metrics.observe_request("/v1/chat/completions", "POST", 200, ms / 1000)
    metrics.observe_request("/v1/memories", "GET", 503, 0.5)
    for route in ("/ui/api/routing", "/metrics", "/healthz", "unmatched"):
        metrics.observe_request(route, "GET", 200, 0.001)
    clock.now = T0 + 65
    metrics.observe_request("/v1/embeddings", "POST", 200, 0.020)

    snap = series.snapshot()
    points = snap["points"]
    assert len(points) == 60 and snap["step"] == 60
    assert [p["t"] for p in points[-2:]] == [T0, T0 + 60]
    assert points[-2] == {"t": T0, "requests": 101, "errors": 1, "p50_ms": 51.0, "p99_ms": 100.0, "fallbacks": 0}
    assert points[-1]["requests"] == 1 and points[-1]["p50_ms"] == points[-1]["p99_ms"] == 20.0
    assert all(p["requests"] == 0 and p["p50_ms"] is None for p in points[:-2])
    assert metrics.requests[("/ui/api/routing", "GET", 200)] == 1  # the Prometheus counters still see it all


def test_fallbacks_are_the_growth_of_the_routers_total_per_minute() -> None:
    clock, fallbacks = Clock(T0 + 1), Fallbacks()
    fallbacks.total = 7  # served before the series started: not this hour's
    series = TrafficSeries(clock=clock, fallback_total=fallbacks)
    series.observe("/v1/chat/completions", "POST", 200, 0.1)
    fallbacks.total = 9
    clock.now = T0 + 1.5  # within FALLBACK_SAMPLE_S of the last read: not read on the request path
    reads = fallbacks.reads
    series.observe("/v1/chat/completions", "POST", 200, 0.1)
    assert fallbacks.reads == reads
    clock.now = T0 + 61
    fallbacks.total = 12
    series.observe("/v1/chat/completions", "POST", 200, 0.1)
    clock.now = T0 + 130
    points = series.snapshot()["points"]
    assert [p["fallbacks"] for p in points[-3:]] == [0, 5, 0]

    # an hour later the old minutes are gone and the first visible one does not inherit their fallbacks
    clock.now = T0 + 3600 + 61
    fallbacks.total = 13
    series.observe("/v1/chat/completions", "POST", 200, 0.1)
    points = series.snapshot()["points"]
    assert sum(p["requests"] for p in points) == 1
    assert sum(p["fallbacks"] for p in points) == 1


def test_a_busy_minute_keeps_a_bounded_sample_and_a_failing_reader_is_ignored() -> None:
    def broken() -> int:
        raise RuntimeError("router is being rebuilt")

    series = TrafficSeries(clock=Clock(T0), fallback_total=broken)
    for i in range(SAMPLES_PER_MINUTE * 3):
        series.observe("/v1/embeddings", "POST", 200, 0.010 if i % 2 else 0.030)
    point = series.snapshot()["points"][-1]
    assert point["requests"] == SAMPLES_PER_MINUTE * 3
    assert point["fallbacks"] == 0
    assert point["p50_ms"] in (10.0, 30.0) and point["p99_ms"] == 30.0
    assert len(series._buckets[T0 // 60].latencies) == SAMPLES_PER_MINUTE


def _an_hour_of_traffic(series: TrafficSeries, clock: Clock, fallbacks: Fallbacks) -> tuple[int, int]:
    """Steady traffic for 60 minutes with an outage (fallbacks, slower answers, some 5xx) in minutes 30-37."""
    start = clock.now // 60 * 60 - 59 * 60
    total = outage_minutes = 0
    for minute in range(60):
        outage = 30 <= minute < 38
        outage_minutes += outage
        for i in range(6 + (minute * 7) % 11):
            clock.now = start + minute * 60 + 3 * i  # 3 s apart: every request samples the fallbacks
            if outage:
                fallbacks.total += 1
            series.observe("/v1/chat/completions", "POST", 500 if outage and i == 0 else 200,
                           (0.9 if outage else 0.25) + 0.01 * (i % 5) + (1.5 if i == 3 else 0))
            total += 1
    clock.now = start + 59 * 60 + 30
    return total, outage_minutes


def test_an_hour_drawn_by_the_browser(dashboard: Any, page_factory: Any) -> None:
    import time

    clock, fallbacks = Clock(time.time()), Fallbacks()
    series = TrafficSeries(clock=clock, fallback_total=fallbacks)
    total, outage_minutes = _an_hour_of_traffic(series, clock, fallbacks)
    dashboard.app.state.ui.series = series

    page = page_factory()
    sign_in(page, dashboard, route="traffic")
    expect(page.locator("#traffic-totals .stat").nth(0)).to_contain_text(f"{total:,}")
    expect(page.locator('#chart-requests rect[data-key="requests"]')).to_have_count(60)
    expect(page.locator('#chart-requests rect[data-key="fallbacks"]')).to_have_count(outage_minutes)
    expect(page.locator('#chart-latency circle[data-key="p50_ms"]')).to_have_count(60)
    expect(page.locator('#chart-latency circle[data-key="p99_ms"]')).to_have_count(60)
    assert page.locator("#chart-latency path").count() == 2
    assert page.locator("#chart-requests svg text").filter(has_text=":").count() >= 5  # time ticks
    screenshot(page, "traffic-hour-desktop")
    assert page.js_errors == []

    mobile = page_factory(MOBILE)
    sign_in(mobile, dashboard, route="traffic")
    expect(mobile.locator('#chart-requests rect[data-key="requests"]')).to_have_count(60)
    assert mobile.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    screenshot(mobile, "traffic-hour-mobile")
    assert mobile.js_errors == []
