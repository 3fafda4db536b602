"""Harness for the dashboard's end-to-end tests: Debian's headless Chromium driven by Playwright (the
Python package; its bundled driver talks to /usr/bin/chromium, no browser is downloaded), and a gateway
on loopback whose model endpoints are the LM Studio and Ollama contract fakes plus the in-process engine.

Test modules import the fixtures they use from here (``from ui_harness import ...``). Screenshots go to
``artifacts/ui/`` (gitignored), one per page and viewport.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes import LMStudioFake, OllamaFake
from fixtures_gateway import GatewayServer
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "ui"
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
ADMIN_KEY = "ui-admin-key-0123456789"
ALICE_KEY = "ui-alice-key-0123456789"
TIMEOUT_MS = 15_000


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): a target that refuses connections."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def dashboard_config(lmstudio: LMStudioFake, ollama: OllamaFake | None = None, *, keys: bool = True) -> MindgateConfig:
    """Chain ``main``: a LAN server that is down, then LM Studio (so a chat falls back and opens the first
    target's breaker). The catalog covers LM Studio, Ollama (when given), the dead LAN server and the
    in-process engine. Keys: an admin key and a key bound to user ``alice``."""
    providers: dict[str, Any] = {
        "lan": {"provider": "openai_compatible",
                "config": {"base_url": f"http://127.0.0.1:{closed_port()}/v1", "timeout": 5}}}
    if ollama is not None:
        providers["gpu-box"] = {"provider": "ollama", "config": {"ollama_base_url": ollama.base_url}}
    config: dict[str, Any] = {
        "llm": {"provider": "lmstudio", "config": {"model": "qwen2.5-7b-instruct",
                                                   "lmstudio_base_url": f"{lmstudio.base_url}/v1"}},
        "providers": providers,
        "routing": {"default": "main", "chains": {"main": {
            "targets": ["lan:qwen2.5-7b-instruct", {"endpoint": "lmstudio", "model": "qwen2.5-7b-instruct"}],
            "retries": 0, "breaker_failures": 1, "breaker_cooldown": 600}}},
        "gateway": {"memory": False},
    }
    if keys:
        config["gateway"]["api_keys"] = [{"name": "admin", "key": ADMIN_KEY},
                                         {"name": "alice-app", "key": ALICE_KEY, "users": ["alice"]}]
    return MindgateConfig.from_dict(config)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (one per test module)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs Debian's chromium and chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_factory(browser: Any) -> Iterator[Callable[..., Any]]:
    """``open(viewport=DESKTOP)``: a fresh page in its own context (own sessionStorage); closed after."""
    contexts: list[Any] = []

    def open_page(viewport: dict[str, int] = DESKTOP, **kwargs: Any) -> Any:
        context = browser.new_context(viewport=viewport, accept_downloads=True, **kwargs)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def dashboard(lmstudio_fake: LMStudioFake, ollama_fake: OllamaFake, memory_factory: Callable[..., AsyncMemory],
              serve_gateway: Callable[[Any], GatewayServer]) -> GatewayServer:
    """The gateway with keys on, the real MiniLM embedder and a fresh SQLite store, on loopback."""
    lmstudio_fake.load_delay = 1.0  # long enough for the page to show a load in progress
    config = dashboard_config(lmstudio_fake, ollama_fake)
    return serve_gateway(create_app(config, memory=memory_factory()))


def sign_in(page: Any, server: GatewayServer, key: str = ADMIN_KEY, route: str = "memories") -> None:
    """Open the dashboard and sign in with ``key``; waits until the page shows."""
    page.goto(f"{server.base_url}/ui/#/{route}")
    page.locator("#login").wait_for(state="visible")
    page.fill("#login-key", key)
    page.click("#login-form button[type=submit]")
    page.locator(f"#page-{route}").wait_for(state="visible")


def add_memories(server: GatewayServer, texts: list[str], key: str = ADMIN_KEY, **scope: str) -> list[str]:
    """Store ``texts`` as given (``infer=false``) in ``scope`` through the REST API; returns their ids."""
    ids = []
    with server.http(key) as client:
        for text in texts:
            response = client.post("/v1/memories", json={"messages": text, "infer": False, **scope})
            response.raise_for_status()
            ids.extend(r["id"] for r in response.json()["results"])
    return ids


def screenshot(page: Any, name: str) -> Path:
    """Save the page as ``artifacts/ui/<name>.png`` (full page) and return the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, f"screenshot {path} is suspiciously small"
    return path


def get_json(server: GatewayServer, path: str, key: str | None = ADMIN_KEY) -> Any:
    with server.http(key) as client:
        response = client.get(path)
        response.raise_for_status()
        return response.json()


__all__ = ["ADMIN_KEY", "ALICE_KEY", "DESKTOP", "MOBILE", "add_memories", "browser", "dashboard",
           "dashboard_config", "get_json", "page_factory", "screenshot", "sign_in"]
