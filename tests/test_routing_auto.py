"""The `auto` chain: LM Studio, then Ollama, then OpenAI (with a key), then the in-process engine.

LM Studio and Ollama cannot run here: their contract fakes (tests/fakes/) stand in; the in-process engine is
the real llama.cpp on the shipped SmolLM2.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fakes import LMStudioFake, LMStudioModel
from fakes.ollama_chat import OllamaChatFake
from mindgate.config import AutoConfig, MindgateConfig
from mindgate.errors import ConfigurationError
from mindgate.providers import create_chat_model
from mindgate.routing import Router
from mindgate.routing._auto import LOCAL_BREAKER_COOLDOWN, auto_router, ollama_url
from mindgate.routing._chains import chat_model_for
from routing_helpers import closed_port_url

ASK = [{"role": "user", "content": "Say hello."}]
LOCAL = AutoConfig(n_ctx=512, n_threads=1)


def row(router: Router, name: str) -> dict[str, Any]:
    return next(r for r in router.status() if r["name"] == name)


def load_on_ollama(fake: OllamaChatFake, name: str) -> None:
    """Load ``name`` the way Ollama's docs say to: an empty generate request."""
    httpx.post(f"{fake.base_url}/api/generate", json={"model": name}).raise_for_status()


@pytest.fixture
def ollama_chat_fake() -> Iterator[OllamaChatFake]:
    fake = OllamaChatFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A loopback port whose accept queue is full: new connections are never completed (a connect timeout)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_lmstudio_first_with_the_loaded_chat_model(lmstudio_fake: LMStudioFake) -> None:
    router = auto_router(LOCAL, lmstudio_url=f"{lmstudio_fake.base_url}/v1", ollama_url=closed_port_url(),
                         use_openai=False)
    assert [t.name for t in router.targets] == ["lmstudio", "ollama", "local"]
    assert lmstudio_fake.requests == []  # nothing is looked up before first use
    lmstudio_fake.load_instance("qwen2-vl-2b-instruct")
    listed = httpx.get(f"{lmstudio_fake.base_url}/api/v1/models").json()["models"]
    loaded = next(m["key"] for m in listed if m["loaded_instances"])

    response = router.complete(ASK, max_tokens=8)
    assert response.content == "echo: Say hello."
    chat = lmstudio_fake.requests_to("/v1/chat/completions")
    assert len(chat) == 1 and chat[0].json["model"] == loaded
    assert row(router, "lmstudio")["model"] == loaded and row(router, "lmstudio")["state"] == "closed"
    assert row(router, "ollama")["requests"] == 0


def test_configured_model_is_used_on_lmstudio(lmstudio_fake: LMStudioFake) -> None:
    router = auto_router(AutoConfig(model="llama-3.2-1b-instruct", n_ctx=512, n_threads=1),
                         lmstudio_url=f"{lmstudio_fake.base_url}/v1", ollama_url=closed_port_url(), use_openai=False)
    router.complete(ASK, max_tokens=8)
    assert lmstudio_fake.requests_to("/v1/models") == []  # a configured model needs no listing
    assert lmstudio_fake.requests_to("/v1/chat/completions")[-1].json["model"].startswith("llama-3.2-1b-instruct")


def test_lmstudio_with_only_embedding_models_falls_through_to_ollama(ollama_chat_fake: OllamaChatFake) -> None:
    embeddings_only = LMStudioFake(models=[LMStudioModel("text-embedding-nomic-embed-text-v1.5", type="embedding",
                                                         embedding_dims=768)]).start()
    load_on_ollama(ollama_chat_fake, "qwen2.5:7b")
    try:
        router = auto_router(LOCAL, lmstudio_url=f"{embeddings_only.base_url}/v1",
                             ollama_url=ollama_chat_fake.base_url, use_openai=False)
        response = router.complete(ASK, max_tokens=8)
        assert response.content
        assert embeddings_only.requests_to("/v1/chat/completions") == []
        assert row(router, "lmstudio")["errors"] == {"model_not_found": 1}
        chat = ollama_chat_fake.requests_to("/api/chat")
        assert len(chat) == 1 and chat[0].json["model"] == "qwen2.5:7b"  # the Ollama provider's choice: loaded
        assert row(router, "ollama")["model"] == "qwen2.5:7b"
    finally:
        embeddings_only.stop()


@pytest.mark.parametrize(("configured", "used"), [
    ("llama3.2", "llama3.2:latest"),  # pulled (Ollama's `:latest` form): used, though another one is loaded
    ("qwen2.5-7b-instruct", "qwen2.5:7b"),  # an LM Studio name Ollama lacks: Ollama's own choice, the loaded one
])
def test_ollama_uses_the_configured_model_when_pulled_else_its_own_choice(
        ollama_chat_fake: OllamaChatFake, configured: str, used: str) -> None:
    load_on_ollama(ollama_chat_fake, "qwen2.5:7b")
    router = auto_router(AutoConfig(model=configured, n_ctx=512, n_threads=1), lmstudio_url=closed_port_url(),
                         ollama_url=ollama_chat_fake.base_url, use_openai=False)
    assert router.complete(ASK, max_tokens=8).content
    assert ollama_chat_fake.requests_to("/api/chat")[-1].json["model"] == used


def test_nothing_running_answers_from_the_in_process_engine_and_skips_servers_after() -> None:
    # The breakers' clock is the test's: how long the in-process model takes to load (past the 15 s cool-down
    # on a busy machine) does not decide what the breakers say.
    now = [0.0]
    router = auto_router(LOCAL, lmstudio_url=closed_port_url(), ollama_url=closed_port_url(), use_openai=False,
                         clock=lambda: now[0])
    response = router.complete(ASK, max_tokens=8)
    assert response.content is not None and response.model == "SmolLM2-135M-Instruct"
    for name in ("lmstudio", "ollama"):
        assert row(router, name)["state"] == "open" and row(router, name)["errors"] == {"network": 1}
    attempts = [r["requests"] for r in router.status()]
    now[0] += LOCAL_BREAKER_COOLDOWN - 0.1
    router.complete(ASK, max_tokens=4)
    after = [r["requests"] for r in router.status()]
    assert after[:2] == attempts[:2] and after[2] == attempts[2] + 1  # the breakers remember
    now[0] += 0.1  # cool-down over: each server gets one probe again (a server started since is found)
    router.complete(ASK, max_tokens=4)
    again = [r["requests"] for r in router.status()]
    assert again == [after[0] + 1, after[1] + 1, after[2] + 1]
    for name in ("lmstudio", "ollama"):
        assert row(router, name)["state"] == "open" and row(router, name)["errors"] == {"network": 2}
    router.close()


def test_unreachable_local_server_costs_at_most_the_short_connect_timeout(
        blackhole: str, ollama_chat_fake: OllamaChatFake) -> None:
    router = auto_router(LOCAL, lmstudio_url=blackhole, ollama_url=ollama_chat_fake.base_url, use_openai=False)
    start = time.perf_counter()
    assert router.complete(ASK, max_tokens=4).content
    assert 0.4 <= time.perf_counter() - start < 2.0
    lmstudio = row(router, "lmstudio")
    assert lmstudio["state"] == "open"
    assert "connect timed out after 0.4s" in lmstudio["last_error"]


def test_openai_joins_the_chain_only_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert [t.name for t in auto_router(LOCAL).targets] == ["lmstudio", "ollama", "local"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert [t.name for t in auto_router(LOCAL).targets] == ["lmstudio", "ollama", "openai", "local"]


def test_ollama_host_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11500")
    assert ollama_url() == "http://127.0.0.1:11500"
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box:11434/")
    assert ollama_url() == "http://gpu-box:11434"


def test_auto_is_what_the_llm_section_and_the_default_chain_build() -> None:
    config = MindgateConfig.from_dict({"llm": {"config": {"n_ctx": 512}}}, env=False)
    model = chat_model_for(config.llm, config)
    assert isinstance(model, Router) and model.model == "auto"
    with pytest.raises(ConfigurationError, match="routing chain, not a provider"):
        create_chat_model("auto", dict(n_ctx=512))
    assert isinstance(Router.from_config("auto", MindgateConfig.from_dict({}, env=False)), Router)
    with pytest.raises(ConfigurationError, match="no routing chain named 'nope'"):
        Router.from_config("nope", MindgateConfig.from_dict({}, env=False))
