"""Dashboard, Routing and Traffic pages, end to end: chat completions through chain ``main`` (a LAN server
that is down, then the LM Studio contract fake) fall back; the Routing page shows, without a reload, the
first target's breaker open and the second's successes; the Traffic plot shows the requests and the
fallbacks of this minute."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import expect

from ui_harness import (
    ADMIN_KEY,
    MOBILE,
    browser,
    dashboard,
    get_json,
    page_factory,
    screenshot,
    sign_in,
)

__all__ = ["browser", "dashboard", "page_factory"]

CHATS = 3


def _clear_of_a_minute_boundary(seconds: float = 15.0) -> None:
    """Wait for the next minute when fewer than ``seconds`` are left in this one: the Traffic plot counts
    per minute, and a request and its fallback are recorded a few milliseconds apart."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.2)


def test_routing_live_and_traffic_plot(dashboard: Any, page_factory: Any) -> None:
    page = page_factory()
    sign_in(page, dashboard, route="routing")
    _clear_of_a_minute_boundary()
    chain = page.locator('#chains section[data-chain="main"]')
    lan = chain.locator('tr[data-target="lan:qwen2.5-7b-instruct"]')
    lmstudio = chain.locator('tr[data-target="lmstudio:qwen2.5-7b-instruct"]')
    expect(lan).to_have_attribute("data-state", "closed")
    expect(lmstudio.locator('td[data-label="OK"]')).to_have_text("0")

    client = dashboard.openai(ADMIN_KEY)
    for i in range(CHATS):
        answer = client.chat.completions.create(model="main", messages=[{"role": "user", "content": f"hi {i}"}])
        assert answer.choices[0].message.content

    # the page polls: no reload needed
    expect(lan).to_have_attribute("data-state", "open")
    expect(lan.locator('td[data-label="Breaker"]')).to_contain_text("retry in")
    expect(lan.locator('td[data-label="Last error"]')).not_to_have_text("–")
    expect(lmstudio.locator('td[data-label="OK"]')).to_have_text(str(CHATS))
    expect(lmstudio).to_have_attribute("data-state", "closed")
    expect(lmstudio.locator('td[data-label="p50"]')).to_contain_text("ms")
    expect(chain.locator(".chain-head")).to_contain_text(f"{CHATS} fallbacks")
    screenshot(page, "routing-desktop")

    page.click('#nav a[data-page="traffic"]')
    totals = page.locator("#traffic-totals")
    expect(totals.locator(".stat").nth(0)).to_contain_text(str(CHATS))
    expect(totals.locator(".stat").nth(1)).to_contain_text(str(CHATS))
    bars = page.locator('#chart-requests rect[data-key="requests"]')
    expect(bars).to_have_count(1)
    expect(page.locator('#chart-requests rect[data-key="fallbacks"]')).to_have_count(1)
    expect(page.locator('#chart-latency circle[data-key="p99_ms"]')).to_have_count(1)
    assert f"{CHATS} requests" in bars.first.locator("title").text_content()
    series = get_json(dashboard, "/ui/api/timeseries")
    assert len(series["points"]) == 60
    assert series["points"][-1]["requests"] == CHATS and series["points"][-1]["fallbacks"] == CHATS
    assert series["points"][-1]["p50_ms"] > 0
    screenshot(page, "traffic-desktop")
    assert page.js_errors == []


def test_routing_and_traffic_mobile(dashboard: Any, page_factory: Any) -> None:
    _clear_of_a_minute_boundary()
    client = dashboard.openai(ADMIN_KEY)
    client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hello"}])
    page = page_factory(MOBILE)
    sign_in(page, dashboard, route="routing")
    expect(page.locator('#chains tr[data-target="lan:qwen2.5-7b-instruct"]')).to_have_attribute("data-state", "open")
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    screenshot(page, "routing-mobile")
    page.click('#nav a[data-page="traffic"]')
    expect(page.locator('#chart-requests rect[data-key="requests"]')).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    screenshot(page, "traffic-mobile")
    assert page.js_errors == []
