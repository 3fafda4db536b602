"""The `openai` provider against the OpenAI contract fake: chat, streaming, embeddings and OpenAI's error forms."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fakes.cloud import OpenAIFake
from fixtures_servers import free_port
from mindgate.errors import AuthenticationError, ConfigurationError, ModelNotFoundError, NetworkError, RateLimitError
from mindgate.providers import ChatModel, Embedder, create_chat_model, create_embedder
from mindgate.providers.openai import OpenAIConfig


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIFake]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = OpenAIFake().start()
    yield server
    server.stop()


def config(fake: OpenAIFake, **extra: object) -> OpenAIConfig:
    return OpenAIConfig(**{"api_key": fake.api_key, "openai_base_url": f"{fake.base_url}/v1", **extra})


def chat(fake: OpenAIFake, **extra: object) -> ChatModel:
    return create_chat_model("openai", config(fake, **extra))


def embedder(fake: OpenAIFake, **extra: object) -> Embedder:
    return create_embedder("openai", config(fake, **extra))


def test_chat_sends_defaults_and_parses_the_completion(fake: OpenAIFake) -> None:
    response = chat(fake, temperature=0.1, max_tokens=20).complete([{"role": "user", "content": "good morning"}])
    assert response.content == "echo: good morning"
    assert response.model == "gpt-4o-mini" and response.finish_reason == "stop"
    assert response.usage.total_tokens == response.usage.prompt_tokens + 3
    sent = fake.requests_to("/v1/chat/completions")[-1].json
    assert sent["temperature"] == 0.1 and sent["max_tokens"] == 20 and sent["model"] == "gpt-4o-mini"
    assert fake.headers_seen[-1]["authorization"] == f"Bearer {fake.api_key}"


def test_stream_keeps_the_wire_payloads(fake: OpenAIFake) -> None:
    chunks = list(chat(fake).stream([{"role": "user", "content": "a b c"}]))
    assert "".join(c.content or "" for c in chunks) == "echo: a b c"
    assert chunks[-1].finish_reason == "stop"
    assert all(c.wire is not None and json.loads(c.wire) == c.raw for c in chunks)


def test_tool_calls_pass_through(fake: OpenAIFake) -> None:
    fake.tool_calls = [{"id": "call_9", "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    response = chat(fake).complete([{"role": "user", "content": "find x"}], tools=[tool],
                                   tool_choice={"type": "function", "function": {"name": "lookup"}})
    assert response.finish_reason == "tool_calls"
    assert json.loads(response.tool_calls[0]["function"]["arguments"]) == {"q": "x"}


def test_embeddings_with_dimensions(fake: OpenAIFake) -> None:
    emb = embedder(fake, embedding_dims=256)
    vectors = emb.embed_batch(["one", "two", "three"])
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert fake.requests_to("/v1/embeddings")[-1].json["dimensions"] == 256
    assert np.allclose(vectors[1], emb.embed("two"))
    assert emb.dims() == 256


def test_default_embedder_probes_its_dims(fake: OpenAIFake) -> None:
    emb = embedder(fake)
    assert emb.dims() == 1536
    assert fake.requests_to("/v1/embeddings")[-1].json["input"] == ["dimension probe"]
    emb.dims()
    assert len(fake.requests_to("/v1/embeddings")) == 1  # cached


def test_dims_mismatch_names_both_numbers(fake: OpenAIFake, caplog: pytest.LogCaptureFixture) -> None:
    emb = embedder(fake, model="text-embedding-3-small", embedding_dims=768, model_kwargs={"dimensions": 1536})
    assert emb.embed("x").shape == (1536,)
    assert "returns 1536-dimensional vectors but embedding_dims is set to 768; using 1536" in caplog.text


def test_wrong_key_names_the_variable(fake: OpenAIFake) -> None:
    with pytest.raises(AuthenticationError) as info:
        chat(fake, api_key="sk-wrong-key-00000000").complete([{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401 and not info.value.retryable
    assert "OPENAI_API_KEY" in str(info.value) and "Incorrect API key provided" in str(info.value)


def test_missing_key_is_a_configuration_error(fake: OpenAIFake) -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        create_chat_model("openai", dict(openai_base_url=f"{fake.base_url}/v1"))


def test_rate_limit_carries_retry_after(fake: OpenAIFake) -> None:
    fake.rate_limit_next = 1
    model = chat(fake)
    with pytest.raises(RateLimitError) as info:
        model.complete([{"role": "user", "content": "hi"}])
    assert info.value.retry_after == 2.0 and info.value.retryable
    assert model.complete([{"role": "user", "content": "hi"}]).content == "echo: hi"


def test_unknown_model_lists_the_available_ones(fake: OpenAIFake) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        chat(fake, model="gpt-9").complete([{"role": "user", "content": "hi"}])
    assert info.value.available == ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "text-embedding-3-large",
                                    "text-embedding-ada-002"]
    assert "gpt-9" in str(info.value) and "gpt-4o-mini" in str(info.value)


def test_closed_port_fails_within_the_connect_timeout() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = create_chat_model("openai", dict(api_key="sk-x", openai_base_url=url, connect_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        model.complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 5
    assert info.value.url == f"{url}/chat/completions" and "OpenAI is not reachable" in str(info.value)
