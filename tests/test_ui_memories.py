"""Dashboard, Memories page, end to end: real headless Chromium against the gateway on loopback with the
real MiniLM embedder and SQLite store. Search, history after an edit, delete, paging, export, and user
text shown as text (never as markup)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from ui_harness import (
    ALICE_KEY,
    MOBILE,
    add_memories,
    browser,
    dashboard,
    get_json,
    page_factory,
    screenshot,
    sign_in,
)

__all__ = ["browser", "dashboard", "page_factory"]

ALICE = [
    "Alice is allergic to peanuts",
    "Alice lives in Lisbon and works as a night-shift nurse",
    "Prefers window seats on long flights",
    '<img src=x onerror="window.__xss=1"> likes <b>strong</b> black tea',
]


def _open_scope(page: Any, kind: str, scope_id: str) -> None:
    page.select_option("#scope-kind", kind)
    page.fill("#scope-id", scope_id)
    page.click("#scope-form button[type=submit]")


def test_search_edit_delete_and_export(dashboard: Any, page_factory: Any) -> None:
    ids = add_memories(dashboard, ALICE, user_id="alice")
    page = page_factory()
    sign_in(page, dashboard)
    _open_scope(page, "user_id", "alice")
    rows = page.locator("#mem-table tbody tr")
    expect(rows).to_have_count(4)

    # user text is text: the markup is visible as characters and nothing was parsed or run
    expect(page.locator("#mem-table tbody")).to_contain_text('<img src=x onerror="window.__xss=1">')
    assert page.locator("#mem-table tbody img, #mem-table tbody b").count() == 0
    assert page.evaluate("window.__xss") is None
    screenshot(page, "memories-list-desktop")

    # hybrid search ranks the allergy first and shows scores
    page.fill("#search-q", "Which foods is Alice allergic to?")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#mem-title")).to_contain_text("Search results")
    expect(rows.first).to_contain_text("allergic to peanuts")
    scores = [float(t) for t in page.locator("#mem-table tbody td.num").all_inner_texts()]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True) and scores[0] > 0
    screenshot(page, "memories-search-desktop")

    # open it: one ADD row; edit: an UPDATE row with the old and new text
    rows.first.click()
    dialog = page.locator("#mem-dialog")
    expect(dialog).to_be_visible()
    history = page.locator("#hist-table tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_have_attribute("data-event", "ADD")
    page.fill("#edit-text", "Alice is allergic to peanuts and shellfish")
    page.click("#save")
    expect(history).to_have_count(2)
    update = history.nth(1)
    expect(update).to_have_attribute("data-event", "UPDATE")
    expect(update.locator("td").nth(1)).to_have_text("Alice is allergic to peanuts")
    expect(update.locator("td").nth(2)).to_have_text("Alice is allergic to peanuts and shellfish")
    screenshot(page, "memory-detail-desktop")
    server_history = get_json(dashboard, f"/v1/memories/{ids[0]}/history?user_id=alice")
    assert [row["event"] for row in server_history] == ["ADD", "UPDATE"]
    assert server_history[1]["new_memory"] == "Alice is allergic to peanuts and shellfish"

    # delete (two clicks): gone from the list and from search, history keeps a DELETE row
    page.click("#delete")
    expect(page.locator("#delete")).to_have_text("Click again to delete")
    page.click("#delete")
    expect(dialog).to_be_hidden()
    expect(rows).to_have_count(3)
    expect(page.locator("#mem-table tbody")).not_to_contain_text("peanuts")
    page.click("#search-clear")
    expect(rows).to_have_count(3)
    expect(page.locator("#mem-table tbody")).not_to_contain_text("peanuts")
    deleted = get_json(dashboard, f"/v1/memories/{ids[0]}/history?user_id=alice")
    assert [row["event"] for row in deleted] == ["ADD", "UPDATE", "DELETE"]

    # export: the live memories of the scope, as JSON
    with page.expect_download() as info:
        page.click("#export")
    exported = json.loads(Path(info.value.path()).read_text())
    assert exported["scope"] == {"user_id": "alice"}
    assert sorted(m["id"] for m in exported["memories"]) == sorted(ids[1:])
    assert info.value.suggested_filename == "mindgate-user-alice.json"
    assert page.js_errors == []


def test_agent_scope_paging_and_add(dashboard: Any, page_factory: Any) -> None:
    texts = [f"Planner note {i:02d}: the deploy window is day {i}" for i in range(23)]
    add_memories(dashboard, texts, agent_id="planner")
    page = page_factory()
    sign_in(page, dashboard)
    _open_scope(page, "agent_id", "planner")
    rows = page.locator("#mem-table tbody tr")
    expect(rows).to_have_count(20)
    expect(page.locator("#prev")).to_be_disabled()
    page.click("#next")
    expect(rows).to_have_count(3)
    expect(page.locator("#page-label")).to_have_text("page 2")
    expect(page.locator("#next")).to_be_disabled()
    page.click("#prev")
    expect(rows).to_have_count(20)

    page.click("#add-box summary")
    page.fill("#add-text", "The planner must never deploy on Fridays")
    page.click("#add-form button[type=submit]")
    expect(rows.first).to_contain_text("never deploy on Fridays")
    listed = get_json(dashboard, "/v1/memories?agent_id=planner&limit=100")["results"]
    assert len(listed) == 24 and listed[0]["memory"] == "The planner must never deploy on Fridays"
    assert page.js_errors == []


def test_scope_list_shows_what_exists_with_counts(dashboard: Any, page_factory: Any) -> None:
    add_memories(dashboard, ALICE[:3], user_id="alice")
    add_memories(dashboard, ["Bob plays chess"], user_id="bob")
    add_memories(dashboard, ["Deploys need a review", "Staging is eu-west"], agent_id="planner")
    add_memories(dashboard, ["Run notes: step one done"], run_id="run-7")
    assert get_json(dashboard, "/ui/api/scopes")["scopes"] == [
        {"kind": "user_id", "id": "alice", "count": 3}, {"kind": "agent_id", "id": "planner", "count": 2},
        {"kind": "run_id", "id": "run-7", "count": 1}, {"kind": "user_id", "id": "bob", "count": 1}]
    page = page_factory()
    sign_in(page, dashboard)
    scopes = page.locator("#scope-list button.scope")
    expect(scopes).to_have_count(4)
    expect(page.locator("#scope-list [data-kind=user_id] h2")).to_have_text("Users")
    expect(page.locator("#scope-list button[data-kind=user_id][data-id=alice]")).to_contain_text("3")
    expect(page.locator("#scope-list button[data-kind=run_id][data-id=run-7]")).to_contain_text("1")
    screenshot(page, "memories-scopes-desktop")

    # one click opens a scope: no id to type; adding a memory there updates its count
    page.click("#scope-list button[data-kind=agent_id][data-id=planner]")
    rows = page.locator("#mem-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#mem-note")).to_contain_text("agent “planner”")
    expect(page.locator("#scope-list button[data-id=planner]")).to_have_attribute("aria-pressed", "true")
    page.click("#add-box summary")
    page.fill("#add-text", "Never deploy on Fridays")
    page.click("#add-form button[type=submit]")
    expect(rows).to_have_count(3)
    expect(page.locator("#scope-list button[data-id=planner] .badge")).to_have_text("3")
    assert page.js_errors == []

    # a key bound to alice lists alice's scope only
    other = page_factory()
    sign_in(other, dashboard, key=ALICE_KEY)
    expect(other.locator("#scope-list button.scope")).to_have_count(1)
    expect(other.locator("#scope-list button.scope")).to_have_attribute("data-id", "alice")


def test_mobile_layout(dashboard: Any, page_factory: Any) -> None:
    add_memories(dashboard, ALICE, user_id="alice")
    page = page_factory(MOBILE)
    sign_in(page, dashboard)
    _open_scope(page, "user_id", "alice")
    expect(page.locator("#mem-table tbody tr")).to_have_count(4)
    # the table became cards: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    screenshot(page, "memories-list-mobile")
    page.locator("#mem-table tbody tr").first.click()
    expect(page.locator("#mem-dialog")).to_be_visible()
    expect(page.locator("#hist-table tbody tr")).to_have_count(1)
    screenshot(page, "memory-detail-mobile")
    assert page.js_errors == []
