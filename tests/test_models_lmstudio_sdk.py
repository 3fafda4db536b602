"""LM Studio through its official SDK (the `lmstudio` package) against the contract fake of its websocket
channel (tests/fakes/lmstudio_sdk.py): listing with file paths, load with config (context length, GPU
offload, TTL, identifier) and LM Studio's own progress, the loaded model's tokenizer and context length
through ChatModel, and the REST path giving the same results when the SDK cannot connect."""

from __future__ import annotations

import pytest

from fakes import LMStudioFake
from mindgate.errors import ConfigurationError, ModelNotFoundError
from mindgate.models import Endpoint, LoadProgress, ModelCatalog, ModelManager
from mindgate.providers import create_chat_model
from mindgate.providers.management._records import LoadOptions

pytest.importorskip("lmstudio")

QWEN = "qwen2.5-7b-instruct"
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count these five words please."}]


@pytest.fixture
def sdk_fake() -> LMStudioFake:
    fake = LMStudioFake(sdk=True)
    fake.start()
    yield fake  # type: ignore[misc]
    fake.stop()


def manager(fake: LMStudioFake) -> ModelManager:
    return ModelManager(ModelCatalog([Endpoint("lm", "lmstudio", fake.base_url)]))


def test_listing_comes_from_the_sdk_with_paths(sdk_fake: LMStudioFake) -> None:
    listing = ModelCatalog([Endpoint("lm", "lmstudio", sdk_fake.base_url)]).list()
    assert listing.endpoints[0].api == "lmstudio sdk"
    embed = next(m for m in listing.models if m.id == "text-embedding-nomic-embed-text-v1.5")
    assert embed.path == "nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q4_K_M.gguf"
    assert embed.type.value == "embedding" and embed.size_bytes == 84_106_624
    assert sdk_fake.sdk is not None and sdk_fake.sdk.calls("listDownloadedModels")
    assert sdk_fake.requests_to("/api/v1/models") == []  # REST not needed


def test_load_with_config_reports_lmstudios_own_progress(sdk_fake: LMStudioFake) -> None:
    reports: list[LoadProgress] = []
    result = manager(sdk_fake).load(QWEN, context_length=8192, ttl=60, progress=reports.append,
                                    options=LoadOptions(gpu=0.5, identifier="my-qwen"))
    assert result.instance_id == "my-qwen" and result.context_length == 8192
    instance = sdk_fake.loaded[0]
    assert (instance.id, instance.context_length, instance.ttl, instance.gpu) == ("my-qwen", 8192, 60, 0.5)
    server = [r.fraction for r in reports if r.message == "LM Studio's load progress"]
    assert server == [0.0, 0.25, 0.5, 0.75, 1.0]  # startLoading, three progress messages, success
    first = next(i for i, r in enumerate(reports) if r.message == "LM Studio's load progress")
    assert not any(r.estimated for r in reports[first:])  # no time-based guess once the server reports
    assert sdk_fake.sdk is not None
    channel = sdk_fake.sdk.calls("loadModel")[0]["creationParameter"]
    assert channel["modelKey"] == QWEN and channel["ttlMs"] == 60_000 and channel["identifier"] == "my-qwen"
    assert sdk_fake.requests_to("/api/v1/models/load") == []


def test_unload_through_the_sdk(sdk_fake: LMStudioFake) -> None:
    sdk_fake.load_instance(QWEN)
    assert manager(sdk_fake).unload(QWEN) == [QWEN] and sdk_fake.loaded == []
    assert sdk_fake.sdk is not None and sdk_fake.sdk.calls("unloadModel")


@pytest.mark.parametrize("use_sdk", [True, False])
def test_same_load_result_with_or_without_the_sdk(use_sdk: bool) -> None:
    with LMStudioFake(sdk=use_sdk) as fake:
        result = manager(fake).load(QWEN, context_length=8192)
        assert (result.instance_id, result.context_length, result.reused) == (QWEN, 8192, False)
        assert manager(fake).load(QWEN).reused  # an adequate instance is reused either way


def test_rest_cannot_set_gpu_or_identifier(lmstudio_fake: LMStudioFake) -> None:
    with pytest.raises(ConfigurationError, match="cannot set GPU offload or an instance identifier") as caught:
        manager(lmstudio_fake).load(QWEN, options=LoadOptions(gpu="max"))
    assert caught.value.hint and "mindgate[lmstudio]" in caught.value.hint


def test_chat_model_counts_tokens_with_the_loaded_model_and_knows_its_context(sdk_fake: LMStudioFake) -> None:
    sdk_fake.load_instance(QWEN, context_length=16384)
    model = create_chat_model("lmstudio", dict(model=QWEN, lmstudio_base_url=f"{sdk_fake.base_url}/v1"))
    tokens = model.count_tokens(ASK)
    assert tokens is not None and tokens >= 7  # the fake's tokenizer counts words of the ChatML-framed prompt
    assert sdk_fake.sdk is not None and sdk_fake.sdk.calls("countTokens")
    assert model.context_length == 16384
    model.close()


def test_counting_never_loads_a_model(sdk_fake: LMStudioFake) -> None:
    model = create_chat_model("lmstudio", dict(model=QWEN, lmstudio_base_url=f"{sdk_fake.base_url}/v1"))
    with pytest.raises(ModelNotFoundError, match="No loaded model"):  # "not now": asked again next time
        model.count_tokens(ASK)
    assert sdk_fake.loaded == []
    model.close()


def test_without_the_sdk_channel_token_counts_are_left_to_the_caller(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.load_instance(QWEN, context_length=16384)
    model = create_chat_model("lmstudio", dict(model=QWEN, lmstudio_base_url=f"{lmstudio_fake.base_url}/v1"))
    assert model.count_tokens(ASK) is None
    model.complete(ASK, max_tokens=4)
    assert model.context_length == 16384  # from the REST listing
    model.close()


def test_server_version_and_capabilities(sdk_fake: LMStudioFake, lmstudio_fake: LMStudioFake) -> None:
    import asyncio

    about = asyncio.run(ModelCatalog([Endpoint("lm", "lmstudio", sdk_fake.base_url)]).aabout("lm"))
    assert about == {"version": "0.4.1 (build 3)", "api": "lmstudio sdk", "sdk": True, "responses_api": True,
                     "embeddings": True, "mcp": True}
    rest = asyncio.run(ModelCatalog([Endpoint("lm", "lmstudio", lmstudio_fake.base_url)]).aabout("lm"))
    assert rest["version"] == "0.4 or newer (REST v1)" and rest["responses_api"] is True and not rest["sdk"]
