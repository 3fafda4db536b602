"""The Ollama adapter (native /api/chat and /api/embed) against the Ollama contract fake."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fakes.ollama import OllamaModel
from fakes.ollama_chat import OllamaChatFake
from fixtures_servers import free_port
from mindgate._sync import run_sync
from mindgate.errors import ConfigurationError, InvalidRequestError, ModelNotFoundError, NetworkError, ProviderError
from mindgate.providers import create_chat_model, create_embedder
from mindgate.providers._structured import complete_json, learned_mode
from mindgate.providers.ollama import OllamaChatModel, OllamaEmbedder

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


@pytest.fixture
def fake() -> Iterator[OllamaChatFake]:
    server = OllamaChatFake().start()
    yield server
    server.stop()


def chat(fake: OllamaChatFake, model: str = "llama3.2", **config: object) -> OllamaChatModel:
    result = create_chat_model("ollama", dict(model=model, ollama_base_url=fake.base_url, **config))
    assert isinstance(result, OllamaChatModel)
    return result


def embedder(fake: OllamaChatFake, **config: object) -> OllamaEmbedder:
    result = create_embedder("ollama", dict(ollama_base_url=fake.base_url, **config))
    assert isinstance(result, OllamaEmbedder)
    return result


def last_chat_body(fake: OllamaChatFake) -> dict:
    return fake.requests_to("/api/chat")[-1].json


def test_complete_maps_the_native_answer_to_openai_shape(fake: OllamaChatFake) -> None:
    model = chat(fake, temperature=0.2, max_tokens=50, ttl=120, n_ctx=8192)
    response = model.complete([{"role": "user", "content": "hello there"}], top_p=0.9, stop="END")
    assert response.content == "echo: hello there"
    assert response.finish_reason == "stop"
    assert response.model == "llama3.2:latest"
    assert response.usage.completion_tokens == 3 and response.usage.prompt_tokens > 0
    assert response.raw["object"] == "chat.completion"
    assert response.raw["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello there"}
    body = last_chat_body(fake)
    assert body["stream"] is False
    assert body["keep_alive"] == 120
    assert body["options"] == {"temperature": 0.2, "num_predict": 50, "top_p": 0.9, "stop": ["END"], "num_ctx": 8192}
    assert fake.loaded["llama3.2:latest"].context_length == 8192


def test_stream_reads_ndjson_and_ends_with_usage(fake: OllamaChatFake) -> None:
    chunks = list(chat(fake).stream([{"role": "user", "content": "one two three"}]))
    assert "".join(c.content or "" for c in chunks) == "echo: one two three"
    assert len(chunks) >= 4
    assert chunks[0].raw["choices"][0]["delta"]["role"] == "assistant"
    assert all(c.raw["object"] == "chat.completion.chunk" for c in chunks)
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert last_chat_body(fake)["stream"] is True


def test_stream_error_line_raises(fake: OllamaChatFake) -> None:
    fake.fail_after = 1
    with pytest.raises(ProviderError, match="mid-stream: an error was encountered"):
        list(chat(fake).stream([{"role": "user", "content": "one two three"}]))


def test_json_schema_is_sent_as_format_and_learned(fake: OllamaChatFake) -> None:
    model = chat(fake)
    schema = {"type": "object", "properties": {"facts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                               "n": {"type": "integer"}}, "required": ["facts", "n"]}
    result = run_sync(complete_json(model, [{"role": "user", "content": "extract"}], schema))
    assert result == {"facts": ["x"], "n": 0}
    assert last_chat_body(fake)["format"] == schema
    assert learned_mode(model.endpoint_key) == "json_schema"


def test_json_object_is_sent_as_format_json(fake: OllamaChatFake) -> None:
    response = chat(fake).complete([{"role": "user", "content": "sky"}], response_format={"type": "json_object"})
    assert json.loads(response.content or "") == {"answer": "sky"}
    assert last_chat_body(fake)["format"] == "json"


def test_tool_calls_come_back_with_json_string_arguments(fake: OllamaChatFake) -> None:
    fake.tool_calls = [CALL]
    response = chat(fake).complete([{"role": "user", "content": "weather in Paris?"}],
                                   tools=[WEATHER_TOOL, TIME_TOOL])
    assert response.finish_reason == "tool_calls"
    assert response.content is None
    [call] = response.tool_calls
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert [t["function"]["name"] for t in last_chat_body(fake)["tools"]] == ["get_weather", "get_time"]


def test_tool_choice_is_emulated(fake: OllamaChatFake) -> None:
    model = chat(fake)
    messages = [{"role": "user", "content": "hi"}]
    model.complete(messages, tools=[WEATHER_TOOL, TIME_TOOL],
                   tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [t["function"]["name"] for t in last_chat_body(fake)["tools"]] == ["get_time"]
    model.complete(messages, tools=[WEATHER_TOOL], tool_choice="none")
    assert "tools" not in last_chat_body(fake)
    with pytest.raises(InvalidRequestError, match="'nope', which is not among the tools"):
        model.complete(messages, tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}})


def test_streamed_tool_calls_are_indexed(fake: OllamaChatFake) -> None:
    fake.tool_calls = [CALL, {**CALL, "function": {"name": "get_time", "arguments": '{"city": "Oslo"}'}}]
    chunks = list(chat(fake).stream([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL, TIME_TOOL]))
    calls = [call for chunk in chunks for call in chunk.tool_calls]
    assert [c["index"] for c in calls] == [0, 1]
    assert [json.loads(c["function"]["arguments"])["city"] for c in calls] == ["Paris", "Oslo"]
    assert chunks[-1].finish_reason == "tool_calls"


def test_model_without_tool_support_is_a_provider_error(fake: OllamaChatFake) -> None:
    with pytest.raises(ProviderError, match="does not support tools") as info:
        chat(fake, model="llava:7b").complete([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL])
    assert info.value.status_code == 400 and info.value.retryable is False


def test_openai_messages_are_translated_to_native_ones(fake: OllamaChatFake) -> None:
    messages = [
        {"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    chat(fake).complete(messages)
    sent = last_chat_body(fake)["messages"]
    assert sent[0] == {"role": "user", "content": "what is this", "images": ["iVBORw0KGgo="]}
    assert sent[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    with pytest.raises(InvalidRequestError, match="base64 data, not links"):
        chat(fake).complete([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}]}])


def test_unsupported_options_are_rejected(fake: OllamaChatFake) -> None:
    with pytest.raises(InvalidRequestError, match="n > 1"):
        chat(fake).complete([{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(ConfigurationError, match="unknown chat option"):
        chat(fake).complete([{"role": "user", "content": "hi"}], frobnicate=True)


def test_missing_model_lists_the_pulled_ones(fake: OllamaChatFake) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        chat(fake, model="mistral:7b").complete([{"role": "user", "content": "hi"}])
    error = info.value
    assert "llama3.2:latest" in error.available and "nomic-embed-text:latest" in error.available
    assert "ollama pull mistral:7b" in str(error)
    assert "qwen2.5:7b" in str(error)


def test_embeddings_shape_order_and_dims(fake: OllamaChatFake) -> None:
    emb = embedder(fake, batch_size=2)
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
    vectors = emb.embed_batch(texts)
    assert vectors.shape == (5, 768) and vectors.dtype == np.float32
    assert len(fake.requests_to("/api/embed")) == 3  # batches of 2, 2, 1
    assert np.allclose(vectors[3], emb.embed("delta"))
    assert not np.allclose(vectors[0], vectors[1])
    assert emb.dims() == 768
    assert emb.identity().describe() == "ollama:nomic-embed-text (768 dims)"
    assert fake.requests_to("/api/embed")[0].json["input"] == ["alpha", "beta"]


def test_embedding_dims_mismatch_is_a_warning_and_the_probe_wins(fake: OllamaChatFake,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    assert embedder(fake, embedding_dims=512).dims() == 768
    assert "returns 768-dimensional vectors but embedding_dims is set to 512" in caplog.text


def test_embedder_passes_keep_alive_and_truncate(fake: OllamaChatFake) -> None:
    embedder(fake, ttl=60, model_kwargs={"truncate": False, "num_thread": 2}).embed("x")
    body = fake.requests_to("/api/embed")[-1].json
    assert body == {"keep_alive": 60, "truncate": False, "options": {"num_thread": 2},
                    "model": "nomic-embed-text", "input": ["x"]}


def test_base_url_with_v1_suffix_reaches_the_native_api(fake: OllamaChatFake) -> None:
    model = create_chat_model("ollama", dict(model="llama3.2", ollama_base_url=f"{fake.base_url}/v1/"))
    assert model.complete([{"role": "user", "content": "hi"}]).content == "echo: hi"


def test_closed_port_is_a_network_error_naming_ollama_serve() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    model = create_chat_model("ollama", dict(model="llama3.2", ollama_base_url=url, connect_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        model.complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 5
    assert url in str(info.value) and "ollama serve" in str(info.value)
    with pytest.raises(NetworkError, match="ollama serve"):
        create_embedder("ollama", dict(ollama_base_url=url, connect_timeout=1.0)).embed("x")


# -- no model configured: detected at first use -------------------------------------------------------------


def test_without_model_the_loaded_chat_model_is_used(fake: OllamaChatFake) -> None:
    run_sync(fake_load(fake, "qwen2.5:7b"))
    model = create_chat_model("ollama", dict(ollama_base_url=fake.base_url))
    assert model.model == "(auto-detected)" and model.text_completions  # /v1/completions is offered before
    assert fake.requests_to("/api/chat") == []  # nothing is asked before the first request
    model.complete([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert last_chat_body(fake)["model"] == "qwen2.5:7b" and model.model == "qwen2.5:7b"


def test_without_model_and_nothing_loaded_a_pulled_chat_model_is_chosen_never_an_embedder() -> None:
    only = OllamaChatFake(models=[OllamaModel("nomic-embed-text:latest", family="nomic-bert", size=274_302_450,
                                              capabilities=("embedding",)),
                                  OllamaModel("llama3.2:latest")]).start()
    try:
        create_chat_model("ollama", dict(ollama_base_url=only.base_url)).complete(
            [{"role": "user", "content": "Say hello."}], max_tokens=8)
        assert last_chat_body(only)["model"] == "llama3.2:latest"
    finally:
        only.stop()


def test_without_model_and_no_chat_model_pulled_says_how_to_get_one() -> None:
    empty = OllamaChatFake(models=[OllamaModel("nomic-embed-text:latest", family="nomic-bert",
                                               capabilities=("embedding",))]).start()
    try:
        model = create_chat_model("ollama", dict(ollama_base_url=empty.base_url))
        with pytest.raises(ModelNotFoundError, match="has no chat model") as info:
            model.complete([{"role": "user", "content": "Say hello."}], max_tokens=8)
        assert info.value.available == ["nomic-embed-text:latest"] and "ollama pull" in str(info.value)
    finally:
        empty.stop()


async def fake_load(fake: OllamaChatFake, name: str) -> None:
    """Load ``name`` the way Ollama's docs say to: an empty generate request."""
    import httpx

    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        (await client.post("/api/generate", json={"model": name})).raise_for_status()
