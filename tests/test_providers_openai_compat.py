"""`openai_compatible` and LM Studio's OpenAI surface against the REAL llama.cpp server (SmolLM2-135M).

Format-level assertions only: what a 135M model says is never asserted, only the shapes it comes back in.
"""

from __future__ import annotations

import json
import time
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from fixtures_servers import LlamaServer, free_port
from mindgate._sync import run_sync
from mindgate.errors import NetworkError, ProviderError
from mindgate.providers import create_chat_model, create_embedder
from mindgate.providers._structured import complete_json, learned_mode
from mindgate.providers.lmstudio import LMStudioChatModel
from mindgate.providers.openai_compat import OpenAICompatChatModel

MESSAGES = [{"role": "user", "content": "Name one colour."}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def compat(server: LlamaServer, **extra: object) -> OpenAICompatChatModel:
    model = create_chat_model("openai_compatible", dict(model=server.model_alias, base_url=server.base_url,
                                                                  **extra))
    assert isinstance(model, OpenAICompatChatModel)
    return model


def test_complete_returns_an_openai_shaped_answer(llama_server: LlamaServer) -> None:
    response = compat(llama_server, max_tokens=8, temperature=0).complete(MESSAGES)
    assert isinstance(response.content, str) and response.content
    assert response.model == "smollm2"
    assert response.finish_reason in {"stop", "length"}
    assert 0 < response.usage.completion_tokens <= 8 and response.usage.prompt_tokens > 0
    assert response.raw["object"] == "chat.completion" and response.raw["choices"][0]["message"]["role"] == "assistant"


def test_stream_yields_deltas_then_a_finish_reason(llama_server: LlamaServer) -> None:
    chunks = list(compat(llama_server, max_tokens=8).stream(MESSAGES))
    assert len(chunks) >= 2
    assert "".join(c.content or "" for c in chunks)
    finished = [c for c in chunks if c.finish_reason]
    assert len(finished) == 1 and finished[0].finish_reason in {"stop", "length"}
    assert all(c.wire is not None and json.loads(c.wire) == c.raw for c in chunks)
    assert all(c.raw["object"] == "chat.completion.chunk" for c in chunks)


def test_json_schema_is_rejected_so_json_object_is_used_and_remembered(llama_server: LlamaServer) -> None:
    model = compat(llama_server, temperature=0)
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    strict = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    with pytest.raises(ProviderError) as info:
        model.complete(MESSAGES, response_format=strict, max_tokens=30)
    assert info.value.status_code == 500

    result = run_sync(complete_json(model, MESSAGES, schema, max_tokens=60))
    assert isinstance(result, dict) and isinstance(result["colour"], str)
    assert learned_mode(model.endpoint_key) == "json_object"
    again = run_sync(complete_json(model, MESSAGES, schema, max_tokens=60))
    assert isinstance(again["colour"], str)


class _Colour(BaseModel):
    kind: Literal["colour"]
    name: str = Field(max_length=12)


class _Answer(BaseModel):
    colour: _Colour
    shade: _Colour | None = None


def test_a_pydantic_schema_reaches_the_servers_grammar(llama_server: LlamaServer) -> None:
    schema = _Answer.model_json_schema()  # $defs/$ref, anyOf with null, const, titles, as pydantic emits them
    model = compat(llama_server, temperature=0)
    answer = run_sync(complete_json(model, MESSAGES, schema, validate=_Answer.model_validate, max_tokens=60))
    assert isinstance(answer, _Answer) and answer.colour.kind == "colour" and len(answer.colour.name) <= 12
    assert learned_mode(model.endpoint_key) == "json_object"


def test_forced_tool_choice_returns_parseable_tool_calls(llama_server: LlamaServer) -> None:
    response = compat(llama_server, temperature=0).complete(
        [{"role": "user", "content": "What is the weather in Paris?"}], tools=[WEATHER_TOOL],
        tool_choice=FORCE_WEATHER, max_tokens=40)
    assert response.finish_reason == "tool_calls"
    [call] = response.tool_calls
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_developer_messages_reach_a_server_without_that_role_as_system(llama_server: LlamaServer) -> None:
    # the llama.cpp server refuses the `developer` role that OpenAI's newer clients (Codex, the Agents SDK) send
    messages = [{"role": "developer", "content": "Answer in one word."}, {"role": "user", "content": "Hi"}]
    response = compat(llama_server, max_tokens=4, temperature=0).complete(messages)
    assert response.finish_reason in ("stop", "length") and response.usage.prompt_tokens > 0


def test_lmstudio_surface_against_the_same_server(llama_server: LlamaServer) -> None:
    model = create_chat_model("lmstudio", dict(model=llama_server.model_alias,
                                                         lmstudio_base_url=llama_server.base_url, max_tokens=8))
    assert isinstance(model, LMStudioChatModel)
    assert model.complete(MESSAGES).content
    assert "".join(c.content or "" for c in model.stream(MESSAGES))
    tool_response = model.complete([{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER_TOOL],
                                   tool_choice=FORCE_WEATHER, max_tokens=60, temperature=0)
    assert isinstance(json.loads(tool_response.tool_calls[0]["function"]["arguments"]), dict)


def test_a_chat_server_is_no_embedding_server(llama_server: LlamaServer) -> None:
    emb = create_embedder("openai_compatible", dict(model="smollm2", base_url=llama_server.base_url))
    with pytest.raises(ProviderError, match=r"HTTP 500.*embedding=True"):
        emb.embed("x")


@pytest.mark.parametrize(("provider", "key", "hint"), [("lmstudio", "lmstudio_base_url", "lms server start"),
                                                       ("openai_compatible", "base_url", "start the server"),
                                                       ("ollama", "ollama_base_url", "ollama serve")])
def test_closed_port_fails_fast_with_a_network_error(provider: str, key: str, hint: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = create_chat_model(provider, dict(model="m", connect_timeout=1.0, **{key: url}))
    started = time.monotonic()
    with pytest.raises(NetworkError) as info:
        model.complete(MESSAGES)
    assert time.monotonic() - started < 3
    assert url.removesuffix("/v1") in str(info.value) and hint in str(info.value)
