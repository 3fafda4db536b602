"""``/v1/responses`` passed through to a target's own route (``responses_api: native | auto``), with the
official ``openai`` SDK against the gateway on a loopback port. The upstream is the CONTRACT FAKE of a server
with its own Responses API (tests/fakes/responses_api.py: OpenAI's documented response object, semantic events
with ``sequence_number`` and error shape), since the llama.cpp server used elsewhere has no such route; the
bridge fallback target is the SCRIPTED UPSTREAM (tests/fakes/scripted.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from agents_helpers import run_weather_agent
from fakes import LMStudioFake
from fakes.responses_api import ResponsesAPIFake
from fakes.scripted import ScriptedUpstream
from fixtures_gateway import GatewayServer
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers._base import Embedder

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
WEATHER_CALL = {"id": "call_w1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}


@pytest.fixture
def fake() -> Iterator[ResponsesAPIFake]:
    server = ResponsesAPIFake()
    server.start()
    yield server
    server.stop()


def _llm(fake: ResponsesAPIFake, mode: str = "native", **extra: Any) -> dict[str, Any]:
    return {"provider": "openai_compatible", "config": {"base_url": f"{fake.base_url}/v1", "model": "gpt-4o-mini",
                                                        "responses_api": mode, **extra}}


@pytest.fixture
def start(serve_gateway: Serve, memory_factory: MakeMemory) -> Callable[..., GatewayServer]:
    def make(config: dict[str, Any]) -> GatewayServer:
        return serve_gateway(create_app(MindgateConfig.from_dict(config), memory=memory_factory(None)))
    return make


def test_non_streamed_passthrough_is_stored_and_continued(fake: ResponsesAPIFake, start: Callable[..., GatewayServer],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    gateway = start({"llm": _llm(fake)})
    client = gateway.openai()
    with caplog.at_level(logging.INFO, logger="mindgate.access"):
        raw = client.responses.with_raw_response.create(model="smart", input="hello there", instructions="Be brief.",
                                                        metadata={"run": "1"}, max_output_tokens=20)
    first = raw.parse()
    [logged] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mindgate.access"]
    assert logged["passthrough"] is True and logged["served_by"] == "gpt-4o-mini"
    assert logged["prompt_tokens"] == first.usage.input_tokens  # type: ignore[union-attr]
    assert raw.headers["x-mindgate-responses"] == "native"
    assert first.output_text == "echo: hello there" and first.model == "gpt-4o-mini"
    assert first.usage is not None and first.usage.input_tokens > 0 and first.store is True
    [sent] = fake.response_bodies()
    # the client's request as it came, with the target's model id; mindgate stores, so the target does not
    assert sent["model"] == "gpt-4o-mini" and sent["input"] == "hello there" and sent["store"] is False
    assert sent["instructions"] == "Be brief." and sent["metadata"] == {"run": "1"} and sent["max_output_tokens"] == 20
    assert not fake.requests_to("/v1/chat/completions")

    assert client.responses.retrieve(first.id).output_text == first.output_text
    [item] = client.responses.input_items.list(first.id).data
    assert item.type == "message" and item.content[0].text == "hello there"  # type: ignore[union-attr]

    second = client.responses.create(model="smart", previous_response_id=first.id, input="and again")
    assert second.previous_response_id == first.id and second.output_text == "echo: and again"
    continued = fake.response_bodies()[-1]
    # mindgate resolves previous_response_id and sends the conversation: stateless servers (Ollama) work too
    assert "previous_response_id" not in continued
    assert [(i.get("role"), i.get("content")) for i in continued["input"]] == [
        ("user", "hello there"), ("assistant", "echo: hello there"), ("user", "and again")]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="smart", previous_response_id=first.id, input="hi")
    assert len(fake.response_bodies()) == 2  # another caller's or a deleted id never reaches the upstream


def test_streamed_passthrough_events_are_renumbered_and_stored(fake: ResponsesAPIFake,
                                                               start: Callable[..., GatewayServer]) -> None:
    fake.sequence_numbers = False  # a server that does not number its events: the gateway does
    gateway = start({"llm": _llm(fake)})
    client = gateway.openai()
    with client.responses.stream(model="gpt-4o-mini", input="stream me please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert final.output_text == "echo: stream me please" and final.usage is not None
    assert fake.response_bodies()[-1]["stream"] is True
    assert client.responses.retrieve(final.id).output_text == "echo: stream me please"


def test_function_tool_round_trip_passes_through(fake: ResponsesAPIFake, start: Callable[..., GatewayServer]) -> None:
    fake.tool_calls = [WEATHER_CALL]
    gateway = start({"llm": _llm(fake)})
    client = gateway.openai()
    first = client.responses.create(model="gpt-4o-mini", input="Weather in Oslo?", tools=[WEATHER_TOOL])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_w1"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert fake.response_bodies()[-1]["tools"] == [WEATHER_TOOL]

    with client.responses.stream(model="gpt-4o-mini", input="Weather in Oslo?", tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        kinds = [e.type for e in stream]
        streamed = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds and streamed.output[0].type == "function_call"

    fake.tool_calls = None
    answer = client.responses.create(model="gpt-4o-mini", previous_response_id=first.id, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                     input=[{"type": "function_call_output", "call_id": "call_w1", "output": "sunny"}])
    sent = fake.response_bodies()[-1]["input"]
    assert sent[1] == {"type": "function_call", "call_id": "call_w1", "name": "get_weather",
                       "arguments": '{"city":"Oslo"}'}
    assert sent[2] == {"type": "function_call_output", "call_id": "call_w1", "output": "sunny"}
    assert answer.status == "completed"


def test_upstream_errors_keep_openais_shape(fake: ResponsesAPIFake, start: Callable[..., GatewayServer]) -> None:
    gateway = start({"llm": _llm(fake)})
    client = gateway.openai()
    with pytest.raises(openai.BadRequestError) as rejected:
        client.responses.create(model="gpt-4o-mini", input="hi", extra_body={"frobnicate": 1})
    error = rejected.value.body
    assert isinstance(error, dict) and error["param"] == "frobnicate" and "Unknown parameter" in error["message"]
    assert error["code"] == "upstream_rejected_request"

    fake.cut_after = 5  # the upstream drops the connection mid-stream: the stream ends with response.failed
    with client.responses.create(model="gpt-4o-mini", input="cut this short", stream=True) as events:
        received = list(events)
    assert received[-1].type == "response.failed"
    assert received[-1].response.error is not None and "dropped the connection" in received[-1].response.error.message
    assert [e.sequence_number for e in received] == list(range(len(received)))

    fake.cut_after = None
    fake.fail_next = [(429, {"message": "Rate limit reached", "type": "requests", "param": None,
                             "code": "rate_limit_exceeded"})] * 3
    with pytest.raises(openai.APIStatusError) as limited:
        client.responses.create(model="gpt-4o-mini", input="hi")
    # retried with the chain's backoff, then the chain is exhausted (its breaker now open), as for chat
    assert limited.value.status_code == 503 and "rate limiting" in str(limited.value.message)
    assert len(fake.fail_next) == 0


def test_bridge_is_used_when_memory_is_on(fake: ResponsesAPIFake, start: Callable[..., GatewayServer]) -> None:
    gateway = start({"llm": _llm(fake)})
    client = gateway.openai()
    raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="I like tea.", user="ann")
    assert raw.headers["x-mindgate-responses"] == "bridge; memory"
    assert raw.parse().output_text == "echo: I like tea."
    assert not fake.response_bodies() and len(fake.requests_to("/v1/chat/completions")) == 1
    # memory off for the request: passed through again
    passed = client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi", user="ann",
                                                       extra_body={"memory": False})
    assert passed.headers["x-mindgate-responses"] == "native" and len(fake.response_bodies()) == 1
    assert "memory" not in fake.response_bodies()[0]
    # the passed-through response is owned by the user it acted for, as a bridged one is
    stored = passed.parse().id
    with gateway.http() as http:
        assert http.get(f"/v1/responses/{stored}", headers={"X-Mindgate-User": "ann"}).status_code == 200
        assert http.get(f"/v1/responses/{stored}", headers={"X-Mindgate-User": "bob"}).status_code == 404
        assert http.get(f"/v1/responses/{stored}").status_code == 404


def test_auto_bridges_a_server_without_the_route_and_native_names_the_fix(
        fake: ResponsesAPIFake, start: Callable[..., GatewayServer]) -> None:
    fake.responses_route = False
    auto = start({"llm": _llm(fake, "auto")}).openai()
    for _ in range(2):
        raw = auto.responses.with_raw_response.create(model="gpt-4o-mini", input="hello")
        assert raw.parse().output_text == "echo: hello"
    assert raw.headers["x-mindgate-responses"] == "bridge; target"
    assert len(fake.requests_to("/v1/responses")) == 1  # learned once, then bridged without asking
    assert len(fake.requests_to("/v1/chat/completions")) == 2

    native = start({"llm": _llm(fake, "native")}).openai()
    with pytest.raises(openai.APIStatusError) as failed:
        native.responses.create(model="gpt-4o-mini", input="hello")
    assert failed.value.status_code == 502 and "responses_api" in failed.value.message


def test_chain_falls_back_natively_then_onto_the_bridge(fake: ResponsesAPIFake,
                                                        start: Callable[..., GatewayServer]) -> None:
    scripted = ScriptedUpstream(["from the bridge"]).start()
    try:
        config = {"providers": {
            "dead": {"provider": "openai_compatible", "config": {"base_url": "http://127.0.0.1:9/v1",
                                                                 "model": "gpt-4o-mini", "responses_api": "native"}},
            "up": _llm(fake),
            "chatonly": {"provider": "openai_compatible", "config": {"base_url": f"{scripted.base_url}/v1",
                                                                     "model": "scripted"}}},
            "routing": {"chains": {"smart": {"targets": ["dead", "up", "chatonly"], "retries": 0}}}}
        client = start(config).openai()
        raw = client.responses.with_raw_response.create(model="smart", input="hello")
        assert raw.headers["x-mindgate-responses"] == "native" and raw.parse().output_text == "echo: hello"

        fake.fail_next = [(500, {"message": "boom", "type": "server_error", "param": None, "code": None})]
        bridged = client.responses.with_raw_response.create(model="smart", input="hello")
        assert bridged.headers["x-mindgate-responses"] == "bridge; target"
        # the walk stopped at chatonly (no pass-through): the request is bridged over the whole chain, where
        # `up` answers chat completions (its /v1/responses failed; its chat route works)
        assert bridged.parse().output_text == "echo: hello" and len(fake.requests_to("/v1/chat/completions")) == 1
        assert not scripted.chat_bodies()
    finally:
        scripted.stop()


def test_a_keys_model_binding_and_token_limit_apply_to_pass_through(fake: ResponsesAPIFake,
                                                                 start: Callable[..., GatewayServer]) -> None:
    config = {"llm": _llm(fake), "gateway": {"api_keys": [{"name": "ci", "key": "sk-ci-0123456789",
                                                           "models": ["gpt-4o-mini"], "tokens_per_minute": 5}]}}
    client = start(config).openai(api_key="sk-ci-0123456789")
    with pytest.raises(openai.PermissionDeniedError):
        client.responses.create(model="gpt-4o", input="no")
    answer = client.responses.create(model="gpt-4o-mini", input="ok")
    assert answer.output_text == "echo: ok" and answer.usage is not None and answer.usage.total_tokens > 5
    # the upstream's usage was charged to the key: its token bucket is in debt now
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o-mini", input="more")
    assert len(fake.response_bodies()) == 1


def test_an_openai_agents_run_passes_through_with_its_function_tool(fake: ResponsesAPIFake,
                                                                   start: Callable[..., GatewayServer]) -> None:
    fake.tool_calls, fake.reply = [WEATHER_CALL], "It is sunny in Oslo."
    gateway = start({"llm": _llm(fake)})
    called, result = run_weather_agent(gateway.v1, "gpt-4o-mini")
    assert called == ["Oslo"] and result.final_output == "It is sunny in Oslo."
    first, second = fake.response_bodies()
    assert first["instructions"] == "Answer with the weather tool." and first["tools"][0]["name"] == "get_weather"
    assert second["input"][-1] == {"type": "function_call_output", "call_id": "call_w1", "output": "sunny, 21 C"}
    assert not fake.requests_to("/v1/chat/completions")


def test_lm_studio_passes_through_after_one_load(serve_gateway: Serve, minilm: Embedder) -> None:
    """LM Studio >= 0.3.29 (its contract fake with /v1/responses): the model is loaded once by mindgate, with
    the configured context length, before concurrent passed-through requests (not JIT-raced by them)."""
    with LMStudioFake(responses=True, load_delay=0.3, auto_evict=False) as fake:
        config = MindgateConfig.from_dict({
            "llm": {"provider": "lmstudio", "config": {"model": "qwen2.5-7b-instruct", "n_ctx": 8192,
                                                       "lmstudio_base_url": f"{fake.base_url}/v1",
                                                       "responses_api": "native"}},
            "gateway": {"memory": False}}, env=False)
        gateway = serve_gateway(create_app(config, embedder=minilm, warm_up=False))

        async def burst() -> list[str]:
            client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=60)
            try:
                answers = await asyncio.gather(*(client.responses.create(model="qwen2.5-7b-instruct",
                                                                         input=f"question {i}") for i in range(5)))
            finally:
                await client.close()
            return [a.output_text for a in answers]

        assert asyncio.run(burst()) == [f"echo: question {i}" for i in range(5)]
        [load] = fake.requests_to("/api/v1/models/load")
        assert load.json["context_length"] == 8192 and [i.id for i in fake.loaded] == ["qwen2.5-7b-instruct"]
        assert len(fake.requests_to("/v1/responses")) == 5 and not fake.requests_to("/v1/chat/completions")
