"""The `azure_openai` provider against the Azure OpenAI contract fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.cloud import AzureOpenAIFake
from mindgate.errors import AuthenticationError, ConfigurationError, ModelNotFoundError, ProviderError, RateLimitError
from mindgate.providers import create_chat_model, create_embedder
from mindgate.providers._upstream import Upstream
from mindgate.providers.azure import AzureClient, AzureConfig, AzureKwargs
from mindgate.providers.openai_compat import OpenAICompatChatModel

AZURE_VARS = ["AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "OPENAI_API_VERSION",
              "AZURE_OPENAI_API_VERSION", "AZURE_OPENAI_AD_TOKEN", "LLM_AZURE_OPENAI_API_KEY", "LLM_AZURE_DEPLOYMENT",
              "LLM_AZURE_ENDPOINT", "LLM_AZURE_API_VERSION", "EMBEDDING_AZURE_OPENAI_API_KEY",
              "EMBEDDING_AZURE_DEPLOYMENT", "EMBEDDING_AZURE_ENDPOINT", "EMBEDDING_AZURE_API_VERSION"]
MESSAGES = [{"role": "user", "content": "hello azure"}]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureOpenAIFake]:
    for name in AZURE_VARS:
        monkeypatch.delenv(name, raising=False)
    server = AzureOpenAIFake().start()
    yield server
    server.stop()


def kwargs(fake: AzureOpenAIFake, **extra: object) -> AzureKwargs:
    values = {"api_key": fake.api_key, "azure_endpoint": fake.base_url, "azure_deployment": "gpt4o-prod",
              "api_version": "2024-10-21", **extra}
    return AzureKwargs(**values)


def test_chat_uses_deployment_path_api_version_and_api_key_header(fake: AzureOpenAIFake) -> None:
    model = create_chat_model("azure_openai", dict(azure_kwargs=kwargs(fake), max_tokens=30))
    response = model.complete(MESSAGES)
    assert response.content == "echo: hello azure" and response.model == "gpt4o-prod"
    assert fake.requests_to("/openai/deployments/gpt4o-prod/chat/completions")
    assert fake.api_versions_seen == ["2024-10-21"]
    headers = fake.headers_seen[-1]
    assert headers["api-key"] == fake.api_key and "authorization" not in headers


def test_stream(fake: AzureOpenAIFake) -> None:
    chunks = list(create_chat_model("azure_openai", dict(azure_kwargs=kwargs(fake))).stream(MESSAGES))
    assert "".join(c.content or "" for c in chunks) == "echo: hello azure"
    assert chunks[-1].finish_reason == "stop"


def test_default_headers_are_sent(fake: AzureOpenAIFake) -> None:
    config = AzureConfig(azure_kwargs=kwargs(fake, default_headers={"x-ms-client-request-id": "abc"}))
    create_chat_model("azure_openai", config).complete(MESSAGES)
    assert fake.headers_seen[-1]["x-ms-client-request-id"] == "abc"


def test_embeddings_and_dims(fake: AzureOpenAIFake) -> None:
    config = AzureConfig(azure_kwargs=kwargs(fake, azure_deployment="embed-small"), embedding_dims=512)
    emb = create_embedder("azure_openai", config)
    assert emb.embed_batch(["a", "b"]).shape == (2, 512)
    assert fake.requests_to("/openai/deployments/embed-small/embeddings")[-1].json["dimensions"] == 512
    assert emb.identity().describe() == "azure_openai:embed-small (512 dims)"


def test_environment_fallbacks(fake: AzureOpenAIFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", fake.api_key)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.base_url)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-06-01")
    monkeypatch.setenv("EMBEDDING_AZURE_DEPLOYMENT", "embed-small")
    assert create_chat_model("azure_openai", dict(model="gpt4o-prod")).complete(MESSAGES).content
    assert create_embedder("azure_openai", dict()).dims() == 1536
    assert fake.api_versions_seen == ["2024-06-01", "2024-06-01"]


def test_entra_token_replaces_the_key(fake: AzureOpenAIFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", fake.ad_token)
    config = AzureConfig(azure_kwargs=kwargs(fake, api_key=None))
    assert create_chat_model("azure_openai", config).complete(MESSAGES).content == "echo: hello azure"
    assert fake.headers_seen[-1]["authorization"] == f"Bearer {fake.ad_token}"


@pytest.mark.parametrize(("missing", "named"), [("azure_endpoint", "AZURE_OPENAI_ENDPOINT"),
                                                ("api_version", "OPENAI_API_VERSION"),
                                                ("api_key", "AZURE_OPENAI_API_KEY"),
                                                ("azure_deployment", "azure_kwargs.azure_deployment")])
def test_missing_setting_names_the_variable(fake: AzureOpenAIFake, missing: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace(".", r"\.")):
        create_chat_model("azure_openai", dict(azure_kwargs=kwargs(fake, **{missing: None})))


def test_wrong_key_names_the_variable(fake: AzureOpenAIFake) -> None:
    model = create_chat_model("azure_openai", dict(azure_kwargs=kwargs(fake, api_key="nope")))
    with pytest.raises(AuthenticationError, match="AZURE_OPENAI_API_KEY") as info:
        model.complete(MESSAGES)
    assert "Access denied due to invalid subscription key" in str(info.value)


def test_missing_api_version_is_a_404_the_adapter_explains(fake: AzureOpenAIFake) -> None:
    model = create_chat_model("azure_openai", dict(azure_kwargs=kwargs(fake)))
    assert isinstance(model, OpenAICompatChatModel) and isinstance(model.client, AzureClient)
    client = AzureClient(model.client.settings, timeout=10, connect_timeout=1)
    # what a client that forgets api-version sends: the same requests without the query
    client.upstream = Upstream(client.base_url, headers=client.headers, timeout=10, connect_timeout=1)
    with pytest.raises(ProviderError, match="api_version") as info:
        OpenAICompatChatModel(client, "gpt4o-prod").complete(MESSAGES)
    assert info.value.status_code == 404 and "Resource not found" in str(info.value)
    assert not isinstance(info.value, ModelNotFoundError)


def test_unknown_deployment_is_model_not_found(fake: AzureOpenAIFake) -> None:
    model = create_chat_model("azure_openai", dict(azure_kwargs=kwargs(fake, azure_deployment="gpt5")))
    with pytest.raises(ModelNotFoundError, match="deployment 'gpt5' does not exist") as info:
        model.complete(MESSAGES)
    assert "azure_kwargs.azure_deployment" in str(info.value) and info.value.available == []


def test_rate_limit_reads_retry_after(fake: AzureOpenAIFake) -> None:
    fake.rate_limit_next = 1
    with pytest.raises(RateLimitError, match="exceeded token rate limit") as info:
        create_chat_model("azure_openai", dict(azure_kwargs=kwargs(fake))).complete(MESSAGES)
    assert info.value.retry_after == 6.0
