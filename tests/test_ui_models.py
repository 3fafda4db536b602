"""Dashboard, Models page, end to end: the catalog across the LM Studio and Ollama contract fakes, a LAN
server that is down and the in-process engine; load and unload buttons with progress; fit verdicts."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import expect

from fakes.lmstudio import LMStudioModel
from mindgate.gateway import _ui_api as ui_api
from mindgate.providers.management._resources import GPUInfo, read_resources
from mindgate.routing._placement import shared_placement
from ui_harness import MOBILE, browser, dashboard, get_json, page_factory, screenshot, sign_in

__all__ = ["browser", "dashboard", "page_factory"]

SMALL = "llama-3.2-1b-instruct@q4_k_m"


def _row(page: Any, model: str, endpoint: str = "lmstudio") -> Any:
    return page.locator(f'#models-table tbody tr[data-model="{model}"][data-endpoint="{endpoint}"]')


def test_catalog_load_and_unload(dashboard: Any, lmstudio_fake: Any, page_factory: Any) -> None:
    lmstudio_fake.models.append(LMStudioModel("llama-3.1-405b-instruct", size_bytes=240 * 2**30,
                                              max_context_length=131072, quantization="Q4_K_M"))
    page = page_factory()
    sign_in(page, dashboard, route="models")
    row = _row(page, SMALL)
    expect(row).to_have_attribute("data-state", "not-loaded")

    # every provider's models, with context, size, quantization and a fit verdict
    expect(row.locator('td[data-label="Context"]')).to_have_text("131,072")
    expect(row.locator('td[data-label="Size"]')).to_have_text("770.3 MiB")
    expect(row.locator('td[data-label="Quant."]')).to_have_text("Q4_K_M")
    expect(row.locator('td[data-label="Fits"]')).to_contain_text("fits")
    expect(_row(page, "llama-3.1-405b-instruct").locator('td[data-label="Fits"]')).to_contain_text("too big")
    assert page.locator('#models-table tbody tr[data-endpoint="gpu-box"]').count() >= 1
    assert page.locator('#models-table tbody tr[data-endpoint="local"]').count() == 1
    expect(page.locator('#endpoints .chip[data-endpoint="lan"]')).to_contain_text("unreachable")
    expect(page.locator('#endpoints .chip[data-endpoint="lmstudio"]')).to_contain_text("lmstudio ·")
    expect(page.locator("#gauges")).to_contain_text("RAM")
    expect(page.locator("#gauges")).to_contain_text("free")
    screenshot(page, "models-desktop")

    # Load: progress while the server loads (the fake takes 1 s), then loaded on the server and the page
    row.get_by_role("button", name="Load").click()
    expect(row.locator(".progress")).to_be_visible()
    expect(row.locator(".job")).to_contain_text("loading")
    screenshot(page, "models-loading-desktop")
    expect(row).to_have_attribute("data-state", "loaded")
    assert [i.id for i in lmstudio_fake.loaded] == ["llama-3.2-1b-instruct"]
    expect(row.locator('td[data-label="State"]')).to_have_text("loaded")
    listed = get_json(dashboard, "/ui/api/models")["models"]
    assert next(m for m in listed if m["id"] == SMALL)["state"] == "loaded"

    # Unload
    row.get_by_role("button", name="Unload").click()
    expect(row).to_have_attribute("data-state", "not-loaded")
    assert lmstudio_fake.loaded == []

    # a model that does not fit is refused with the numbers, and nothing is loaded
    _row(page, "llama-3.1-405b-instruct").get_by_role("button", name="Load").click()
    expect(page.locator("#toast")).to_contain_text("does not fit in memory")
    assert lmstudio_fake.loaded == []
    assert page.js_errors == []


def test_models_mobile(dashboard: Any, page_factory: Any) -> None:
    page = page_factory(MOBILE)
    sign_in(page, dashboard, route="models")
    expect(_row(page, SMALL)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    screenshot(page, "models-mobile")
    assert page.js_errors == []


def test_vram_gauge_per_gpu(dashboard: Any, page_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine has no NVIDIA GPU, so the page's resources snapshot is given one: what is tested is how
    the page shows VRAM per GPU, not NVML's reading."""
    gpu = GPUInfo(0, "NVIDIA H100 80GB HBM3", 80 * 2**30, 60 * 2**30)
    reading = dataclasses.replace(read_resources(), gpus=(gpu,), gpu_status="nvidia-ml-py: 1 GPU(s)")
    monkeypatch.setattr(ui_api, "default_monitor", lambda: SimpleNamespace(latest=lambda: reading))
    page = page_factory()
    sign_in(page, dashboard, route="models")
    vram = page.locator("#gauges .gauge").nth(1)
    expect(vram).to_contain_text("VRAM · GPU 0")
    expect(vram).to_contain_text("NVIDIA H100 80GB HBM3")
    expect(vram).to_contain_text("60.0 GiB free")
    expect(vram).to_contain_text("of 80.0 GiB (25% used)")
    expect(vram.locator(".bar > span")).to_have_attribute("style", "width: 25%;")
    assert page.js_errors == []


def test_switching_decisions_and_gpu_status(dashboard: Any, page_factory: Any) -> None:
    """The Models page shows why VRAM is or is not visible, what the gateway has loaded, and the last
    switching decisions with their reasons (one recorded here as the router's placement would)."""
    shared_placement().decisions.record("main", "big", "skip",
                                        "big-model@ctx8192 does not fit: needs 9.0 GiB, 2.0 GiB free")
    page = page_factory()
    sign_in(page, dashboard, route="models")
    expect(page.locator("#gauges")).to_contain_text(read_resources().gpu_status)
    row = page.locator('#decisions-table tbody tr[data-action="skip"]').first
    expect(row).to_contain_text("big-model@ctx8192 does not fit: needs 9.0 GiB, 2.0 GiB free")
    expect(row.locator('td[data-label="Chain"]')).to_have_text("main")
    expect(page.locator("#switching")).to_contain_text("Loaded in the gateway")
    screenshot(page, "models-switching-desktop")
    data = get_json(dashboard, "/ui/api/resources")
    assert data["decisions"][0]["reason"].startswith("big-model@ctx8192 does not fit")
    assert data["resources"]["ram_total_bytes"] > 0 and data["resources"]["gpu_status"]
    assert page.js_errors == []
