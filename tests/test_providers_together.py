"""The `together` provider against the Together AI contract fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.cloud import TogetherFake
from mindgate.config import BaseURLConfig
from mindgate.errors import AuthenticationError, ConfigurationError, ModelNotFoundError
from mindgate.providers import create_chat_model, create_embedder

MESSAGES = [{"role": "user", "content": "hello together"}]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[TogetherFake]:
    server = TogetherFake().start()
    monkeypatch.setenv("TOGETHER_API_KEY", server.api_key)
    yield server
    server.stop()


def config(fake: TogetherFake, **extra: object) -> BaseURLConfig:
    return BaseURLConfig(base_url=f"{fake.base_url}/v1", **extra)


def test_chat_and_stream_with_the_default_model(fake: TogetherFake) -> None:
    model = create_chat_model("together", config(fake))
    response = model.complete(MESSAGES)
    assert response.content == "echo: hello together"
    assert response.model == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert "".join(c.content or "" for c in model.stream(MESSAGES)) == "echo: hello together"
    assert fake.headers_seen[-1]["authorization"] == f"Bearer {fake.api_key}"


def test_embeddings_default_to_mem0s_model(fake: TogetherFake, caplog: pytest.LogCaptureFixture) -> None:
    emb = create_embedder("together", config(fake))
    assert emb.embed_batch(["x", "y", "z"]).shape == (3, 768)
    assert emb.identity().describe() == "together:togethercomputer/m2-bert-80M-8k-retrieval (768 dims)"
    # a configured embedding_dims that disagrees with the model is a warning; the probed size is used
    with caplog.at_level("WARNING"):
        assert create_embedder("together", config(fake, model="BAAI/bge-large-en-v1.5", embedding_dims=768)).dims() \
            == 1024
    assert "returns 1024-dimensional vectors but embedding_dims is set to 768" in caplog.text


def test_missing_and_wrong_key_name_the_variable(fake: TogetherFake, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthenticationError, match="TOGETHER_API_KEY") as info:
        create_chat_model("together", config(fake, api_key="bad")).complete(MESSAGES)
    assert "Invalid API key provided" in str(info.value)
    monkeypatch.delenv("TOGETHER_API_KEY")
    with pytest.raises(ConfigurationError, match="TOGETHER_API_KEY"):
        create_embedder("together", config(fake))


def test_non_serverless_model_lists_the_served_ones(fake: TogetherFake) -> None:
    model = create_chat_model("together", config(fake, model="mistralai/Mixtral-8x7B-Instruct-v0.1"))
    with pytest.raises(ModelNotFoundError, match="non-serverless model") as info:
        model.complete(MESSAGES)
    assert info.value.status_code == 400
    assert info.value.available == list(fake.models)  # read from the bare-array /v1/models
    assert "Qwen/Qwen2.5-7B-Instruct-Turbo" in str(info.value)


def test_unknown_model_is_model_not_found(fake: TogetherFake) -> None:
    with pytest.raises(ModelNotFoundError, match="Unable to access model no/such-model"):
        create_embedder("together", config(fake, model="no/such-model")).embed("x")
