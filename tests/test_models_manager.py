"""ModelManager: serialised, idempotent loads (20 concurrent callers -> one load request), TTL expiry on every
provider, unloading, progress, the fit refusal and resource-aware selection."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from fakes import LMStudioFake, LMStudioModel, OllamaFake, OllamaModel
from mindgate._assets import DEFAULT_CHAT_MODEL
from mindgate.config import TargetConfig
from mindgate.errors import ConfigurationError, ProviderError, ResourceError
from mindgate.models import (
    Endpoint,
    InsufficientMemoryError,
    LoadProgress,
    ModelCatalog,
    ModelManager,
    ModelState,
    ModelType,
    snapshot,
)
from mindgate.providers.local._pool import LocalModelPool
from mindgate.providers.management import _fit as fit

QWEN = "qwen2.5-7b-instruct"


@pytest.fixture
def pool() -> Iterator[LocalModelPool]:
    pool = LocalModelPool()
    yield pool
    pool.close()


def manager_for(*endpoints: Endpoint, pool: LocalModelPool | None = None) -> ModelManager:
    return ModelManager(ModelCatalog(endpoints, pool=pool or LocalModelPool()))


def lm(fake: LMStudioFake) -> Endpoint:
    return Endpoint("lm", "lmstudio", fake.base_url)


def ol(fake: OllamaFake) -> Endpoint:
    return Endpoint("ol", "ollama", fake.base_url)


def test_twenty_concurrent_loads_send_one_load_request() -> None:
    with LMStudioFake(load_delay=0.3) as fake:
        manager = manager_for(lm(fake))

        async def burst() -> list[str]:
            results = await asyncio.gather(*(manager.aload(QWEN, context_length=4096 if i % 2 else None)
                                             for i in range(20)))
            return [r.instance_id for r in results]

        ids = asyncio.run(burst())
        assert set(ids) == {QWEN}
        assert len(fake.requests_to("/api/v1/models/load")) == 1
        assert [i.id for i in fake.loaded] == [QWEN]


def test_load_is_idempotent_and_never_creates_a_duplicate(lmstudio_fake: LMStudioFake) -> None:
    manager = manager_for(lm(lmstudio_fake))
    first = manager.load(QWEN, context_length=8192)
    again = manager.load(QWEN, context_length=4096)
    same = manager.load(QWEN)
    assert not first.reused and again.reused and same.reused
    assert again.instance_id == QWEN and again.context_length == 8192
    assert len(lmstudio_fake.requests_to("/api/v1/models/load")) == 1
    assert [i.id for i in lmstudio_fake.loaded] == [QWEN]


def test_larger_context_unloads_before_loading(lmstudio_fake: LMStudioFake) -> None:
    manager = manager_for(lm(lmstudio_fake))
    manager.load(QWEN, context_length=4096)
    result = manager.load(QWEN, context_length=16384)
    assert not result.reused and result.context_length == 16384
    assert [(i.id, i.context_length) for i in lmstudio_fake.loaded] == [(QWEN, 16384)]
    paths = [r.path for r in lmstudio_fake.requests if r.method == "POST"]
    assert paths == ["/api/v1/models/load", "/api/v1/models/unload", "/api/v1/models/load"]
    assert lmstudio_fake.requests_to("/api/v1/models/load")[-1].json == {
        "model": QWEN, "echo_load_config": True, "context_length": 16384}


def test_existing_duplicates_are_reused_and_unloaded_one_by_one(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.load_instance(QWEN)
    lmstudio_fake.load_instance(QWEN)  # `lms load` twice: qwen and qwen:2
    manager = manager_for(lm(lmstudio_fake))
    assert manager.load(QWEN).reused
    assert manager.unload(f"{QWEN}:2") == [f"{QWEN}:2"]
    assert [i.id for i in lmstudio_fake.loaded] == [QWEN]
    assert manager.unload(QWEN) == [QWEN]
    assert lmstudio_fake.loaded == [] and manager.unload(QWEN) == []


def test_lmstudio_ttl_is_sent_and_expires(lmstudio_fake: LMStudioFake) -> None:
    manager = manager_for(lm(lmstudio_fake))
    manager.load(QWEN, ttl=1)
    assert lmstudio_fake.requests_to("/api/v1/models/load")[0].json["ttl"] == 1
    assert manager.catalog.resolve(QWEN, refresh=True).state is ModelState.LOADED
    time.sleep(1.2)
    assert manager.catalog.resolve(QWEN, refresh=True).state is ModelState.NOT_LOADED


def test_ollama_keep_alive_load_ttl_and_unload(ollama_fake: OllamaFake) -> None:
    manager = manager_for(ol(ollama_fake))
    result = manager.load("llama3.2", context_length=8192, ttl=1)
    assert result.instance_id == "llama3.2:latest" and result.context_length == 8192
    [request] = ollama_fake.requests_to("/api/generate")
    assert request.json == {"model": "llama3.2:latest", "keep_alive": 1, "options": {"num_ctx": 8192},
                            "stream": False}
    assert [m.id for m in manager.ps()] == ["llama3.2:latest"]
    time.sleep(1.2)
    assert manager.ps() == []
    manager.load("nomic-embed-text")
    assert ollama_fake.requests_to("/api/embed")[0].json["keep_alive"] == -1
    assert manager.unload("nomic-embed-text") == ["nomic-embed-text:latest"]
    assert ollama_fake.loaded == {}


def test_local_engine_idle_ttl(pool: LocalModelPool) -> None:
    manager = manager_for(Endpoint("local", "local"), pool=pool)
    # a TTL long enough that a loaded machine cannot expire it between the two loads, short enough to wait out
    result = manager.load(DEFAULT_CHAT_MODEL, context_length=512, ttl=2.0)
    assert result.context_length == 512 and [i.n_ctx for i in pool.instances()] == [512]
    assert manager.load(DEFAULT_CHAT_MODEL, context_length=256).reused
    deadline = time.monotonic() + 10
    while pool.instances() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.instances() == []
    assert manager.catalog.resolve(DEFAULT_CHAT_MODEL, refresh=True).state is ModelState.NOT_LOADED


def test_lmstudio_before_0_4_loads_just_in_time() -> None:
    with LMStudioFake(api_versions=("v0",)) as fake:
        manager = manager_for(lm(fake))
        result = manager.load(QWEN, ttl=60)
        assert result.instance_id == QWEN and fake.loaded[0].ttl == 60
        [jit] = fake.requests_to("/v1/chat/completions")
        assert jit.json["ttl"] == 60 and jit.json["max_tokens"] == 1
        assert manager.load(QWEN).reused
        with pytest.raises(ConfigurationError, match="context length cannot be chosen"):
            manager.load("llama-3.2-1b-instruct", context_length=8192)
        with pytest.raises(ProviderError, match="lms unload"):
            manager.unload(QWEN)


def test_progress_reports(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.load_delay = 0.5
    reports: list[LoadProgress] = []
    manager_for(lm(lmstudio_fake)).load(QWEN, progress=reports.append)
    stages = [r.stage for r in reports]
    assert stages[0] == "checking" and stages[-1] == "loaded" and stages.count("loading") >= 3
    fractions = [r.fraction for r in reports if r.stage == "loading"]
    assert fractions == sorted(fractions) and all(0 <= f <= 0.95 for f in fractions if f is not None)
    assert reports[-1].fraction == 1.0
    again: list[LoadProgress] = []
    manager_for(lm(lmstudio_fake)).load(QWEN, progress=again.append)
    assert [r.stage for r in again] == ["checking", "reused"]


def test_fit_refusal_names_need_free_and_smaller_models() -> None:
    huge = snapshot().ram_total_bytes * 4
    models = [LMStudioModel("giant-405b", size_bytes=huge, max_context_length=131072),
              LMStudioModel("small-1b", size_bytes=800_000_000, max_context_length=32768)]
    with LMStudioFake(models) as fake:
        manager = manager_for(lm(fake))
        manager.catalog.list()
        with pytest.raises(InsufficientMemoryError) as info:
            manager.load("giant-405b", context_length=8192)
        text = str(info.value)
        assert "lm:giant-405b with a 8192-token context does not fit in memory: it needs about" in text
        assert "is free" in text and "smaller models that fit now: lm:small-1b (needs" in text
        assert info.value.needed_bytes > huge and info.value.free_bytes < huge and info.value.shorter_context is None
        assert isinstance(info.value, ResourceError) and not fake.requests_to("/api/v1/models/load")
        assert manager.load("giant-405b", context_length=8192, check_fit=False).instance_id == "giant-405b"


def test_fit_refusal_suggests_a_context_that_fits() -> None:
    ram = snapshot().ram_total_bytes
    model = OllamaModel("longctx:1b", size=500_000_000, context_length=100_000_000, block_count=32,
                        embedding_length=4096, head_count=32, head_count_kv=32)
    with OllamaFake([model]) as fake:
        manager = manager_for(ol(fake))
        wanted = 100_000_000  # KV cache of ~50 TB
        with pytest.raises(InsufficientMemoryError) as info:
            manager.load("longctx:1b", context_length=wanted)
        shorter = info.value.shorter_context
        assert shorter is not None and 256 <= shorter < wanted
        assert re.search(rf"a shorter context fits: --context-length {shorter}\b", str(info.value))
        shape = fit.ModelShape(500_000_000, 2 * 32 * 32 * 128, 100_000_000)
        assert fit.estimate(shape, shorter).total_bytes <= info.value.free_bytes <= ram
        assert not fake.requests_to("/api/generate")


def test_select_picks_the_best_candidate_that_fits(lmstudio_fake: LMStudioFake, ollama_fake: OllamaFake) -> None:
    lmstudio_fake.models.append(LMStudioModel("giant-405b", size_bytes=snapshot().ram_total_bytes * 4))
    manager = manager_for(lm(lmstudio_fake), ol(ollama_fake))
    choice = manager.select(["giant-405b", "missing-model", ("ol", "qwen2.5:7b"), QWEN], context_length=4096)
    assert (choice.model.endpoint, choice.model.id, choice.fits) == ("ol", "qwen2.5:7b", True)
    manager.load(QWEN)
    loaded = manager.select(["giant-405b", QWEN])
    assert loaded.already_loaded and loaded.model.id == QWEN
    route = [TargetConfig(endpoint="lm", model="giant-405b"), TargetConfig(endpoint="ol", model="llama3.2")]
    assert manager.select(route).model.id == "llama3.2:latest"
    embedding = manager.select(["llama3.2", "nomic-embed-text"], model_type=ModelType.EMBEDDING)
    assert embedding.model.id == "nomic-embed-text:latest"
    with pytest.raises(ResourceError, match=r"giant-405b does not fit: needs .* free"):
        manager.select(["giant-405b"])
