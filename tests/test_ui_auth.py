"""Dashboard authentication, end to end: with API keys configured every data endpoint and action the
dashboard uses answers 401 without a valid key (and changes nothing), every page shows the sign-in form
until a key is given, a user-bound key is held to its user, and the shell is public but carries a strict
Content-Security-Policy. Without keys the dashboard opens directly."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from ui_harness import (
    ADMIN_KEY,
    ALICE_KEY,
    MOBILE,
    add_memories,
    browser,
    dashboard,
    dashboard_config,
    get_json,
    page_factory,
    screenshot,
    sign_in,
)

__all__ = ["browser", "dashboard", "page_factory"]

PAGES = ["memories", "models", "routing", "traffic"]
SMALL = "llama-3.2-1b-instruct@q4_k_m"


def _calls(memory_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every endpoint the dashboard reads or acts through."""
    scope = "user_id=alice"
    return [
        ("GET", "/ui/api/session", None),
        ("GET", "/ui/api/models", None),
        ("GET", "/ui/api/models?refresh=true", None),
        ("POST", "/ui/api/models/load", {"endpoint": "lmstudio", "model": SMALL}),
        ("GET", "/ui/api/models/jobs/0123", None),
        ("POST", "/ui/api/models/unload", {"endpoint": "lmstudio", "model": SMALL}),
        ("GET", "/ui/api/routing", None),
        ("GET", "/ui/api/timeseries", None),
        ("GET", f"/v1/memories?{scope}", None),
        ("POST", "/v1/memories", {"messages": "intruder", "user_id": "alice", "infer": False}),
        ("POST", "/v1/memories/search", {"query": "tea", "user_id": "alice"}),
        ("GET", f"/v1/memories/{memory_id}?{scope}", None),
        ("PUT", f"/v1/memories/{memory_id}?{scope}", {"text": "overwritten"}),
        ("GET", f"/v1/memories/{memory_id}/history?{scope}", None),
        ("DELETE", f"/v1/memories/{memory_id}?{scope}", None),
        ("DELETE", f"/v1/memories?{scope}", None),
    ]


def test_every_data_endpoint_and_action_needs_a_key(dashboard: Any, lmstudio_fake: Any) -> None:
    [memory_id] = add_memories(dashboard, ["Alice drinks black tea"], user_id="alice")
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": f"Basic {ADMIN_KEY}"}):
        with httpx.Client(base_url=dashboard.base_url, headers=headers, timeout=30) as client:
            for method, path, body in _calls(memory_id):
                response = client.request(method, path, json=body)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["error"]["type"] == "authentication_error"
    # nothing changed: the memory is intact, nothing was loaded
    memory = get_json(dashboard, f"/v1/memories/{memory_id}?user_id=alice")
    assert memory["memory"] == "Alice drinks black tea"
    assert get_json(dashboard, "/v1/memories?user_id=alice")["results"] == [memory]
    assert lmstudio_fake.loaded == []
    # the shell and its assets hold no data: public, with a strict CSP
    with httpx.Client(base_url=dashboard.base_url, timeout=30) as client:
        for path in ("/ui", "/ui/", "/ui/static/ui.js", "/ui/static/ui.css", "/ui/static/favicon.svg"):
            response = client.get(path)
            assert response.status_code == 200, path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
        assert client.get("/ui/static/../app.py").status_code == 401  # outside /ui/static/: not public
        assert client.get("/ui/static/secrets.txt").status_code == 404
    with httpx.Client(base_url=dashboard.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                      timeout=30) as client:
        assert client.get("/ui/static/../app.py").status_code == 404


def test_every_page_asks_for_a_key(dashboard: Any, page_factory: Any) -> None:
    add_memories(dashboard, ["Alice drinks black tea"], user_id="alice")
    page = page_factory()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status == 401 else None)
    for name in PAGES:
        page.goto(f"{dashboard.base_url}/ui/#/{name}")
        expect(page.locator("#login")).to_be_visible()
        for other in PAGES:
            expect(page.locator(f"#page-{other}")).to_be_hidden()
        expect(page.locator("#nav")).to_be_hidden()
    assert failed and all("/ui/api/session" in url for url in failed)
    expect(page.locator("#login-error")).to_have_text("")
    screenshot(page, "login-desktop")

    # a wrong key is refused with the gateway's message and nothing is shown
    page.fill("#login-key", "not-a-key")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    expect(page.locator("#page-traffic")).to_be_hidden()

    # the right key opens the page asked for; reloads keep it (sessionStorage); sign out forgets it
    page.fill("#login-key", ADMIN_KEY)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#page-traffic")).to_be_visible()
    expect(page.locator("#whoami")).to_have_text("key: admin")
    page.reload()
    expect(page.locator("#page-traffic")).to_be_visible()
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('mindgate.key')") is None
    page.goto(f"{dashboard.base_url}/ui/#/models")
    expect(page.locator("#login")).to_be_visible()
    assert page.js_errors == []

    mobile = page_factory(MOBILE)
    mobile.goto(f"{dashboard.base_url}/ui/#/memories")
    expect(mobile.locator("#login")).to_be_visible()
    screenshot(mobile, "login-mobile")


def test_a_key_revoked_mid_session_brings_back_the_login(dashboard: Any, page_factory: Any) -> None:
    page = page_factory()
    sign_in(page, dashboard, route="routing")
    expect(page.locator("#chains section")).to_have_count(1)
    page.evaluate("sessionStorage.setItem('mindgate.key', 'revoked')")  # the next poll presents a bad key
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#page-routing")).to_be_hidden()
    expect(page.locator("#login-error")).to_contain_text("not valid")


def test_user_bound_key(dashboard: Any, page_factory: Any, lmstudio_fake: Any) -> None:
    add_memories(dashboard, ["Alice drinks black tea"], user_id="alice")
    add_memories(dashboard, ["Bob's door code is 4711"], user_id="bob")
    page = page_factory()
    # the admin looks at bob's memories and signs out: nothing of them stays in the page
    sign_in(page, dashboard)
    page.fill("#scope-id", "bob")
    page.click("#scope-form button[type=submit]")
    expect(page.locator("#mem-table tbody")).to_contain_text("4711")
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert "4711" not in page.content()
    page.fill("#login-key", ALICE_KEY)
    page.click("#login-form button[type=submit]")
    # a key bound to one user opens that user's memories
    expect(page.locator("#scope-id")).to_have_value("alice")
    expect(page.locator("#mem-table tbody tr")).to_have_count(1)
    expect(page.locator("#mem-table tbody")).to_contain_text("black tea")
    # another user's memories are refused, and not shown
    page.fill("#scope-id", "bob")
    page.click("#scope-form button[type=submit]")
    expect(page.locator("#toast")).to_contain_text("may not act for user 'bob'")
    expect(page.locator("#mem-table tbody")).not_to_contain_text("4711")
    # models: visible, but the load buttons are disabled and the action is refused server-side
    page.click('#nav a[data-page="models"]')
    button = page.locator(f'#models-table tr[data-model="{SMALL}"] button')
    expect(button).to_be_disabled()
    with dashboard.http(ALICE_KEY) as client:
        response = client.post("/ui/api/models/load", json={"endpoint": "lmstudio", "model": SMALL})
        assert response.status_code == 403 and "bound to users" in response.json()["error"]["message"]
    assert lmstudio_fake.loaded == []
    assert page.js_errors == []


@pytest.fixture
def open_dashboard(lmstudio_fake: Any, memory_factory: Any, serve_gateway: Any) -> Any:
    from mindgate.gateway._app import create_app

    return serve_gateway(create_app(dashboard_config(lmstudio_fake, keys=False), memory=memory_factory()))


def test_without_keys_the_dashboard_opens_directly(open_dashboard: Any, page_factory: Any) -> None:
    add_memories(open_dashboard, ["Runs on the night shift"], key="", user_id="carol")
    page = page_factory()
    page.goto(f"{open_dashboard.base_url}/ui/#/memories")
    expect(page.locator("#page-memories")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#whoami")).to_have_text("open gateway (no API keys)")
    expect(page.locator("#logout")).to_be_hidden()
    page.fill("#scope-id", "carol")
    page.click("#scope-form button[type=submit]")
    expect(page.locator("#mem-table tbody")).to_contain_text("night shift")
    assert page.js_errors == []
