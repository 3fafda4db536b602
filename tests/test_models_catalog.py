"""ModelCatalog against the contract fakes (LM Studio v1 / v0 / OpenAI-only, Ollama), the real llama.cpp
server and the real shipped GGUF."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from fakes import LMStudioFake, OllamaFake
from fixtures_servers import LlamaServer, free_port
from mindgate._assets import DEFAULT_CHAT_MODEL, default_gguf_path
from mindgate.config import MindgateConfig
from mindgate.errors import ModelNotFoundError, NetworkError
from mindgate.models import Endpoint, ModelCatalog, ModelState, ModelType, endpoints_from_config
from mindgate.providers.local._pool import LocalModelPool


def lm(fake: LMStudioFake, name: str = "lm") -> Endpoint:
    return Endpoint(name, "lmstudio", fake.base_url)


def test_lmstudio_v1_catalog_records(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.load_instance("qwen2.5-7b-instruct", context_length=8192)
    listing = ModelCatalog([lm(lmstudio_fake)]).list()
    [status] = listing.endpoints
    assert status.reachable and status.api == "/api/v1/models" and status.model_count == 4
    qwen = listing.find("qwen2.5-7b-instruct")[0]
    assert (qwen.provider, qwen.endpoint, qwen.type, qwen.state) == ("lmstudio", "lm", ModelType.LLM, ModelState.LOADED)
    assert (qwen.max_context_length, qwen.loaded_context_length, qwen.size_bytes) == (32768, 8192, 4_683_073_952)
    assert qwen.quantization == "Q4_K_M" and qwen.capabilities.tool_use is True and qwen.source.endswith("v1/models")
    assert [i.id for i in qwen.instances] == ["qwen2.5-7b-instruct"]
    vlm = listing.find("qwen2-vl-2b-instruct")[0]
    assert vlm.type is ModelType.VLM and vlm.capabilities.vision is True
    embed = listing.find("text-embedding-nomic-embed-text-v1.5")[0]
    assert embed.type is ModelType.EMBEDDING and embed.state is ModelState.NOT_LOADED


def test_lmstudio_suffix_and_duplicate_instances_are_found(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.load_instance("qwen2.5-7b-instruct")
    lmstudio_fake.load_instance("qwen2.5-7b-instruct")  # what a second `lms load` does
    catalog = ModelCatalog([lm(lmstudio_fake)])
    assert catalog.resolve("llama-3.2-1b-instruct").id == "llama-3.2-1b-instruct@q4_k_m"
    qwen = catalog.resolve("qwen2.5-7b-instruct:2")
    assert qwen.id == "qwen2.5-7b-instruct"
    assert [i.id for i in qwen.instances] == ["qwen2.5-7b-instruct", "qwen2.5-7b-instruct:2"]


def test_lmstudio_falls_back_to_v0_then_openai_listing() -> None:
    with LMStudioFake(api_versions=("v0",)) as v0, LMStudioFake(api_versions=()) as bare:
        v0.load_instance("qwen2.5-7b-instruct")
        listing = ModelCatalog([lm(v0, "v0"), lm(bare, "bare")]).list()
        statuses = {s.endpoint.name: s.api for s in listing.endpoints}
        assert statuses == {"v0": "/api/v0/models", "bare": "/v1/models"}
        old = listing.find("qwen2.5-7b-instruct", endpoint="v0")[0]
        assert old.state is ModelState.LOADED and old.max_context_length == 32768 and old.size_bytes is None
        assert old.capabilities.tool_use is True and old.source == "lmstudio /api/v0/models"
        assert listing.find("text-embedding-nomic-embed-text-v1.5", endpoint="v0")[0].type is ModelType.EMBEDDING
        plain = listing.find("qwen2.5-7b-instruct", endpoint="bare")[0]
        assert plain.state is ModelState.UNKNOWN and plain.max_context_length is None
        assert v0.requests_to("/api/v1/models") and not v0.requests_to("/v1/models")
        # (the SDK's /lmstudio-greeting probe comes first when the `lmstudio` SDK is installed)
        assert [r.path for r in bare.requests if r.path != "/lmstudio-greeting"] == [
            "/api/v1/models", "/api/v0/models", "/v1/models"]


def test_ollama_catalog_records(ollama_fake: OllamaFake) -> None:
    httpx.post(f"{ollama_fake.base_url}/api/generate", json={"model": "qwen2.5:7b", "options": {"num_ctx": 8192}})
    listing = ModelCatalog([Endpoint("ol", "ollama", ollama_fake.base_url)]).list()
    qwen = listing.find("qwen2.5:7b")[0]
    assert qwen.state is ModelState.LOADED and qwen.loaded_context_length == 8192
    assert qwen.max_context_length == 32768 and qwen.architecture == "qwen2"
    assert qwen.kv_elements_per_token == 2 * 28 * 4 * (3584 // 28)
    assert qwen.instances[0].expires_at is not None
    assert listing.find("llava:7b")[0].type is ModelType.VLM
    assert listing.find("llama3.2")[0].id == "llama3.2:latest"
    assert listing.find("nomic-embed-text")[0].type is ModelType.EMBEDDING
    assert listing.find("llama3.2")[0].capabilities.tool_use is True


def test_ollama_show_is_cached_per_digest(ollama_fake: OllamaFake) -> None:
    catalog = ModelCatalog([Endpoint("ol", "ollama", ollama_fake.base_url)], ttl=0)
    catalog.list()
    catalog.list()
    assert len(ollama_fake.requests_to("/api/show")) == len(ollama_fake.models)
    assert len(ollama_fake.requests_to("/api/tags")) == 2


def test_unreachable_endpoint_does_not_break_listing(lmstudio_fake: LMStudioFake) -> None:
    dead = Endpoint("dead", "ollama", f"http://127.0.0.1:{free_port()}", connect_timeout=0.5)
    catalog = ModelCatalog([dead, lm(lmstudio_fake)])
    listing = catalog.list()
    status = {s.endpoint.name: s for s in listing.endpoints}
    assert not status["dead"].reachable and "cannot reach Ollama" in str(status["dead"].error)
    assert status["lm"].reachable and len(listing.models) == 4
    with pytest.raises(NetworkError):
        catalog.resolve("llama3.2", endpoint="dead")
    with pytest.raises(ModelNotFoundError, match="unreachable endpoints not searched: dead"):
        catalog.resolve("llama3.2")


def test_wrong_server_marks_endpoint_unreachable(lmstudio_fake: LMStudioFake) -> None:
    # an Ollama endpoint pointed at LM Studio, which answers /api/tags with "Unexpected endpoint"
    listing = ModelCatalog([Endpoint("wrong", "ollama", lmstudio_fake.base_url)]).list()
    [status] = listing.endpoints
    assert not status.reachable and listing.models == ()
    assert "Unexpected endpoint or method. (GET /api/tags)" in str(status.error)


def test_listing_is_cached_for_ttl(lmstudio_fake: LMStudioFake) -> None:
    catalog = ModelCatalog([lm(lmstudio_fake)], ttl=0.3)
    catalog.list()
    catalog.list()
    assert len(lmstudio_fake.requests_to("/api/v1/models")) == 1
    time.sleep(0.35)
    catalog.list()
    catalog.list(refresh=True)
    assert len(lmstudio_fake.requests_to("/api/v1/models")) == 3


def test_model_not_found_lists_close_matches(lmstudio_fake: LMStudioFake) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        ModelCatalog([lm(lmstudio_fake)]).resolve("qwen2.5-7b-instrct")
    assert "did you mean qwen2.5-7b-instruct" in str(info.value)
    assert "qwen2.5-7b-instruct" in info.value.available


def test_real_llama_cpp_server_is_listed(llama_server: LlamaServer) -> None:
    listing = ModelCatalog([Endpoint("llamacpp", "openai_compatible", llama_server.base_url)]).list()
    [status] = listing.endpoints
    assert status.reachable and status.api == "/v1/models"
    [model] = listing.models
    assert model.id == "smollm2" and model.provider == "openai_compatible" and model.state is ModelState.UNKNOWN


def test_local_engine_lists_the_shipped_gguf_from_its_header() -> None:
    pool = LocalModelPool()
    catalog = ModelCatalog([Endpoint("local", "local")], pool=pool)
    [model] = catalog.list().models
    assert model.id == DEFAULT_CHAT_MODEL and model.path == str(default_gguf_path())
    assert (model.architecture, model.max_context_length, model.quantization) == ("llama", 8192, "Q4_1")
    assert model.size_bytes == default_gguf_path().stat().st_size and model.state is ModelState.NOT_LOADED
    assert model.kv_elements_per_token == 30 * 3 * (64 + 64)
    pool.load(n_ctx=512)
    try:
        loaded = catalog.list(refresh=True).models[0]
        assert loaded.state is ModelState.LOADED and loaded.loaded_context_length == 512
    finally:
        pool.close()


def test_local_engine_model_folder(tmp_path: Path) -> None:
    target = tmp_path / "tiny-chat.gguf"
    target.symlink_to(default_gguf_path())
    catalog = ModelCatalog([Endpoint("local", "local", model_path=str(tmp_path))], pool=LocalModelPool())
    assert [m.id for m in catalog.list().models] == ["tiny-chat"]


def test_endpoints_from_config() -> None:
    config = MindgateConfig.from_dict({
        "llm": {"provider": "lmstudio", "config": {"lmstudio_base_url": "http://10.0.0.5:1234/v1"}},
        "embedder": {"provider": "ollama", "config": {"ollama_base_url": "http://localhost:11434/"}},
        "providers": {"gpu-box": {"provider": "openai_compatible", "config": {"base_url": "http://10.0.0.9:8000"}},
                      "cloud": {"provider": "openai", "config": {"api_key": "sk-x"}}},
    }, env=False)
    endpoints = {e.name: e for e in endpoints_from_config(config)}
    assert set(endpoints) == {"gpu-box", "lmstudio", "ollama"}
    assert endpoints["lmstudio"].url == "http://10.0.0.5:1234" and not endpoints["lmstudio"].on_this_machine
    assert endpoints["ollama"].url == "http://localhost:11434" and endpoints["ollama"].on_this_machine
    assert endpoints["gpu-box"].url == "http://10.0.0.9:8000/v1"
    auto = {e.name: e.url for e in endpoints_from_config(MindgateConfig.from_dict({}, env=False))}
    assert auto == {"lmstudio": "http://localhost:1234", "ollama": "http://localhost:11434", "local": None}
