"""Auto-detection wherever a model is omitted: LM Studio chat and embeddings at any base URL, the fit check's
choice among downloaded models, mem0's path-style ids and the seed's default embedder, and the `auto` chain
with base URLs and named endpoints. LM Studio and Ollama are their contract fakes (tests/fakes/)."""

from __future__ import annotations

import pytest

from fakes import LMStudioFake, LMStudioModel, OllamaFake
from fakes.ollama_chat import OllamaChatFake
from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError, ModelNotFoundError
from mindgate.models import Endpoint, ModelInfo, ModelState, ModelType
from mindgate.providers import create_chat_model, create_embedder
from mindgate.providers.lmstudio import LMStudioConfig
from mindgate.providers.management._detect import choose
from mindgate.providers.management._fit import InsufficientMemoryError
from mindgate.providers.management._resources import Resources
from mindgate.routing import Router
from mindgate.routing._auto import auto_from_config, detect_provider
from mindgate.routing._chains import chat_model_for
from routing_helpers import closed_port_url

ASK = [{"role": "user", "content": "Say hello."}]
GB = 1_000_000_000
SEED_EMBEDDER = "nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.f16.gguf"  # mem0's documented default


def lm_config(fake: LMStudioFake, **settings: object) -> LMStudioConfig:
    return LMStudioConfig(lmstudio_base_url=f"{fake.base_url}/v1", **settings)  # type: ignore[arg-type]


def free(n_bytes: int) -> Resources:
    return Resources(ram_total_bytes=2 * n_bytes, ram_available_bytes=n_bytes, cpu_count=2, cpu_percent=0.0)


def info(model_id: str, size: int, *, kind: ModelType = ModelType.LLM, loaded: bool = False) -> ModelInfo:
    return ModelInfo("lmstudio", "lm", model_id, type=kind, state=ModelState.LOADED if loaded else
                     ModelState.NOT_LOADED, size_bytes=size, max_context_length=8192, source="lmstudio /api/v1/models")


HERE = Endpoint("lm", "lmstudio", "http://127.0.0.1:1234")
LAN = Endpoint("lm", "lmstudio", "http://100.64.1.2:1234")


def test_choice_prefers_a_loaded_model_then_the_largest_that_fits() -> None:
    models = [info("big", 20 * GB), info("mid", 4 * GB), info("small", 1 * GB),
              info("embed", GB // 10, kind=ModelType.EMBEDDING)]
    assert choose(models, "chat", HERE, resources=lambda: free(8 * GB)).id == "mid"
    assert choose([*models, info("tiny", GB // 2, loaded=True)], "chat", HERE,
                  resources=lambda: free(8 * GB)).id == "tiny"
    assert choose(models, "embedding", HERE, resources=lambda: free(8 * GB)).id == "embed"
    # another machine's memory is not visible: the smallest, the likeliest to load
    assert choose(models, "chat", LAN, resources=lambda: free(0)).id == "small"
    with pytest.raises(InsufficientMemoryError, match="small"):
        choose(models, "chat", HERE, resources=lambda: free(GB // 2))
    with pytest.raises(ModelNotFoundError, match="has no embedding model"):
        choose(models[:3], "embedding", HERE)


def test_lmstudio_chat_without_model_uses_the_loaded_llm_at_a_lan_style_base_url(
        lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.load_instance("llama-3.2-1b-instruct")
    model = create_chat_model("lmstudio", lm_config(lmstudio_fake))
    assert model.model == "(auto-detected)" and lmstudio_fake.requests == []  # nothing asked before first use
    response = model.complete(ASK, max_tokens=8)
    assert response.content == "echo: Say hello."
    assert model.model == "llama-3.2-1b-instruct@q4_k_m"
    assert lmstudio_fake.requests_to("/v1/chat/completions")[0].json["model"] == "llama-3.2-1b-instruct@q4_k_m"
    assert lmstudio_fake.requests_to("/api/v1/models/load") == []  # already loaded: nothing to load
    model.close()


def test_lmstudio_chat_without_model_and_nothing_loaded_loads_the_best_that_fits(
        lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.models = [m for m in lmstudio_fake.models if m.key in ("llama-3.2-1b-instruct",
                                                                        "text-embedding-nomic-embed-text-v1.5")]
    model = create_chat_model("lmstudio", lm_config(lmstudio_fake))
    model.complete(ASK, max_tokens=8)
    loads = lmstudio_fake.requests_to("/api/v1/models/load")
    assert [r.json["model"] for r in loads] == ["llama-3.2-1b-instruct@q4_k_m"]
    assert model.context_length == 4096  # the loaded instance's context, from the listing
    model.close()


def test_lmstudio_embedder_without_model_detects_one(lmstudio_fake: LMStudioFake) -> None:
    embedder = create_embedder("lmstudio", lm_config(lmstudio_fake))
    assert embedder.dims() == 768
    assert embedder.model == "text-embedding-nomic-embed-text-v1.5"
    assert lmstudio_fake.requests_to("/v1/embeddings")[-1].json["model"] == "text-embedding-nomic-embed-text-v1.5"
    embedder.close()


@pytest.mark.parametrize("path_id", [SEED_EMBEDDER, "nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.f16.gguf"])
def test_mem0_path_style_ids_resolve_to_lmstudio_keys(lmstudio_fake: LMStudioFake, path_id: str) -> None:
    embedder = create_embedder("lmstudio", lm_config(lmstudio_fake, model=path_id))
    vector = embedder.embed("the seed's default embedder")
    assert vector.shape == (768,) and embedder.model == "text-embedding-nomic-embed-text-v1.5"
    sent = [r.json["model"] for r in lmstudio_fake.requests_to("/v1/embeddings")]
    assert sent == [path_id, "text-embedding-nomic-embed-text-v1.5"]  # LM Studio's 404, then its key
    embedder.close()


def test_embedder_without_any_embedding_model_says_what_to_do() -> None:
    with LMStudioFake(models=[LMStudioModel("qwen2.5-7b-instruct")]) as fake:
        embedder = create_embedder("lmstudio", lm_config(fake))
        with pytest.raises(ModelNotFoundError, match="has no embedding model") as caught:
            embedder.embed("x")
        assert caught.value.hint and "mindgate models get" in caught.value.hint
        embedder.close()


def test_detect_provider_at_a_url(lmstudio_fake: LMStudioFake, ollama_fake: OllamaFake) -> None:
    import asyncio

    assert asyncio.run(detect_provider(f"{lmstudio_fake.base_url}/v1")) == "lmstudio"
    assert asyncio.run(detect_provider(ollama_fake.base_url)) == "ollama"
    openai_only = LMStudioFake(api_versions=()).start()  # answers only the OpenAI surface
    try:
        assert asyncio.run(detect_provider(openai_only.base_url)) == "openai_compatible"
    finally:
        openai_only.stop()


def test_auto_takes_base_urls_and_named_endpoints(lmstudio_fake: LMStudioFake) -> None:
    ollama = OllamaChatFake().start()
    try:
        config = MindgateConfig.from_dict({
            "providers": {"lan": {"provider": "lmstudio",
                                  "config": {"lmstudio_base_url": f"{lmstudio_fake.base_url}/v1"}}},
            "llm": {"provider": "auto", "config": {"endpoints": ["lan", ollama.base_url],
                                                   "lmstudio_base_url": closed_port_url(),
                                                   "ollama_base_url": closed_port_url(),
                                                   "n_ctx": 512, "n_threads": 1}},
        }, env=False)
        router = chat_model_for(config.llm, config)
        assert isinstance(router, Router)
        assert [t.name for t in router.targets][:4] == ["lan", ollama.base_url, "lmstudio", "ollama"]
        assert router.complete(ASK, max_tokens=8).content == "echo: Say hello."
        assert lmstudio_fake.requests_to("/v1/chat/completions")  # the named LAN endpoint answered
        lmstudio_fake.stop()  # now the URL endpoint (Ollama, detected at first use) answers
        router.complete(ASK, max_tokens=8)
        assert ollama.requests_to("/api/chat")
        router.close()
    finally:
        ollama.stop()


def test_auto_config_errors() -> None:
    config = MindgateConfig.from_dict({"llm": {"provider": "auto", "config": {"endpoints": ["nowhere"]}}},
                                      env=False)
    with pytest.raises(ConfigurationError, match="neither a name under `providers:` nor a URL"):
        auto_from_config(config)
    with pytest.raises(ConfigurationError, match="`endpoints` belongs to the `auto` provider"):
        MindgateConfig.from_dict({"llm": {"provider": "lmstudio", "config": {"endpoints": ["x"]}}}, env=False)
    with pytest.raises(ConfigurationError, match="routing chain, not a provider"):
        create_chat_model("auto", dict())
