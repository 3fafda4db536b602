"""Dashboard, Models page: a download started from the page runs on LM Studio (its contract fake's download
job) and shows its progress until it is complete; the API behind it refuses keys bound to users."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from mindgate.providers.lmstudio import _management as _lmstudio_api
from ui_harness import ALICE_KEY, browser, dashboard, get_json, page_factory, screenshot, sign_in

__all__ = ["browser", "dashboard", "page_factory"]

GRANITE = "ibm/granite-4-micro"


def test_download_from_the_models_page(dashboard: Any, lmstudio_fake: Any, page_factory: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lmstudio_api, "DOWNLOAD_POLL_S", 0.5)
    lmstudio_fake.download_steps = 4
    page = page_factory()
    sign_in(page, dashboard, route="models")
    expect(page.locator("#download-endpoint")).to_have_value("lmstudio")  # LM Studio first, then Ollama
    page.fill("#download-model", GRANITE)
    page.click("#download-form button[type=submit]")
    row = page.locator(f'#downloads .download[data-download="{GRANITE}"]')
    expect(row).to_contain_text("downloading")
    expect(row.locator(".progress")).to_be_visible()
    screenshot(page, "models-downloading-desktop")
    expect(row).to_contain_text("completed", timeout=20_000)
    assert GRANITE in [m.key for m in lmstudio_fake.models]
    listed = get_json(dashboard, "/ui/api/models")["downloads"]
    assert listed[0]["model"] == GRANITE and listed[0]["status"] == "completed" and listed[0]["fraction"] == 1.0
    with dashboard.http(ALICE_KEY) as client:  # a key bound to users may not change the machine
        assert client.post("/ui/api/models/download", json={"model": GRANITE}).status_code == 403
