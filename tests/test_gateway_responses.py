"""``/v1/responses`` with the official ``openai`` SDK against the gateway on a loopback port: on the real
llama.cpp server (behind a recording proxy) for answers, streams, continuation and structured output, and
on a SCRIPTED UPSTREAM (tests/fakes/scripted.py) where a tool call or a crash has to happen on cue."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from fakes.scripted import CUT, ScriptedUpstream, ToolCall
from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.gateway._openai_responses_stream import ResponseEvents
from mindgate.memory._memory import AsyncMemory
from mindgate.pipeline import INJECT_HEADER
from mindgate.providers._base import ChatChunk
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def gateway(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> GatewayServer:
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    return serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory(chat)))


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    upstream = ScriptedUpstream([ToolCall("get_weather", {"city": "Oslo"}), "It is sunny in Oslo."])
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def scripted_gateway(serve_gateway: Serve, scripted: ScriptedUpstream, memory_factory: MakeMemory) -> GatewayServer:
    chat = OpenAICompatChatModel(OpenAICompatClient(f"{scripted.base_url}/v1"), "scripted")
    return serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory(None)))


def test_create_retrieve_continue_and_delete(gateway: GatewayServer, llama_proxy: RecordingProxy) -> None:
    client = gateway.openai()
    first = client.responses.create(model="smollm2", instructions="Answer in one short sentence.",
                                    input="My cat is called Miso. What is a cat?", max_output_tokens=12,
                                    temperature=0, reasoning={"effort": "low"}, metadata={"run": "1"})
    assert first.id.startswith("resp_") and first.status in ("completed", "incomplete") and first.output_text
    # a message cut by the output limit is itself incomplete, as OpenAI marks it
    assert first.output[0].status == ("incomplete" if first.status == "incomplete" else "completed")
    assert first.usage is not None and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.instructions == "Answer in one short sentence." and first.max_output_tokens == 12
    assert first.metadata == {"run": "1"} and first.reasoning is not None and first.reasoning.effort == "low"
    sent_first = llama_proxy.chat_requests()[0]
    assert sent_first["max_tokens"] == 12 and sent_first["reasoning_effort"] == "low"

    assert client.responses.retrieve(first.id).output_text == first.output_text
    [item] = client.responses.input_items.list(first.id).data
    assert item.type == "message" and item.content[0].text.startswith("My cat")  # type: ignore[union-attr]

    second = client.responses.create(model="smollm2", previous_response_id=first.id,
                                      input="What is my cat called?", max_output_tokens=8, temperature=0)
    assert second.previous_response_id == first.id
    sent = llama_proxy.chat_requests()[-1]["messages"]
    # the stored conversation comes first; the first request's instructions do not carry over
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert "Miso" in sent[0]["content"] and sent[1]["content"] == first.output_text

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="smollm2", previous_response_id=first.id, input="hi", max_output_tokens=4)


def test_streams_parse_with_the_sdk_helpers(gateway: GatewayServer) -> None:
    client = gateway.openai()
    with client.responses.stream(model="smollm2", input="Count: one, two,", max_output_tokens=10,
                                 temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          final.status and f"response.{final.status}"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and final.output_text == deltas and final.usage is not None
    assert final.output[0].status == ("incomplete" if final.status == "incomplete" else "completed")
    with client.responses.stream(model="smollm2", input="Tell me a long story about a cat.", max_output_tokens=3,
                                 temperature=0) as stream:
        last = list(stream)[-1]  # the SDK's get_final_response() wants response.completed; OpenAI sends this
    assert last.type == "response.incomplete" and last.response.output[0].status == "incomplete"
    assert client.responses.retrieve(final.id).output_text == deltas  # stored at the end of the stream


def test_json_schema_goes_through_the_structured_output_ladder(gateway: GatewayServer,
                                                               llama_proxy: RecordingProxy) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    response = gateway.openai().responses.create(
        model="smollm2", input="Name a city in Norway as JSON.", max_output_tokens=24, temperature=0,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    assert isinstance(json.loads(response.output_text), dict)
    # the llama.cpp server rejects the json_schema form (HTTP 500); the ladder fell back to json_object
    formats = [r.get("response_format", {}).get("type") for r in llama_proxy.chat_requests()]
    assert "json_object" in formats


def test_memories_are_injected_and_the_turn_is_remembered(gateway: GatewayServer,
                                                          llama_proxy: RecordingProxy) -> None:
    with gateway.http() as http:
        added = http.post("/v1/memories", json={"messages": "My favourite colour is teal.", "user_id": "carol",
                                                "infer": False})
        assert added.status_code == 200
    raw = gateway.openai().responses.with_raw_response.create(
        model="smollm2", input="What is my favourite colour?", user="carol", max_output_tokens=4)
    assert raw.headers["x-mindgate-memories"] == "1"
    sent = llama_proxy.chat_requests()[0]["messages"]
    assert INJECT_HEADER in sent[0]["content"] and "teal" in sent[0]["content"]
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert 'mindgate_memory_writes_total{outcome="queued"} 1' in metrics
    # carol's stored response is hers: another user (or none) cannot read it
    client = gateway.openai()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(raw.parse().id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(raw.parse().id, extra_headers={"X-Mindgate-User": "dave"})
    assert client.responses.retrieve(raw.parse().id, extra_headers={"X-Mindgate-User": "carol"}).id == raw.parse().id


def test_function_tool_round_trip(scripted_gateway: GatewayServer, scripted: ScriptedUpstream) -> None:
    client = scripted_gateway.openai()
    first = client.responses.create(model="scripted", input="What is the weather in Oslo?", tools=[WEATHER_TOOL],
                                    tool_choice="auto")
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {
        "city": "Oslo"}
    sent = scripted.chat_bodies()[0]
    assert sent["tools"] == [{"type": "function", "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"}}]
    assert sent["tool_choice"] == "auto"

    second = client.responses.create(model="scripted", previous_response_id=first.id, tools=[WEATHER_TOOL],
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny, 21 C"}])
    assert second.output_text == "It is sunny in Oslo."
    messages = scripted.chat_bodies()[1]["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == call.call_id
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 C"}


def test_streamed_tool_call_events(scripted_gateway: GatewayServer) -> None:
    with scripted_gateway.openai().responses.stream(model="scripted", input="Weather in Oslo?",
                                                    tools=[WEATHER_TOOL]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    [call] = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Oslo"}


def test_an_upstream_crash_mid_stream_is_response_failed(serve_gateway: Serve, memory_factory: MakeMemory) -> None:
    with ScriptedUpstream([CUT]) as upstream:
        chat = OpenAICompatChatModel(OpenAICompatClient(f"{upstream.base_url}/v1"), "scripted")
        server = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory(None)))
        events = list(server.openai().responses.create(model="scripted", input="hi", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error is not None
    assert any(e.type == "response.output_text.delta" for e in events)  # what came before the crash was sent


def test_offered_hosted_tools_are_left_out_and_namespaced_functions_flattened(
        scripted_gateway: GatewayServer, scripted: ScriptedUpstream) -> None:
    """What Codex CLI sends: a hosted tool it only offers (web_search), functions grouped in a namespace,
    developer messages (the chat servers behind the gateway only know the system role)."""
    developer = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]}
    body = {"model": "scripted", "tools": [{"type": "web_search"}, {"type": "namespace", "name": "weather",
                                            "description": "Weather tools.", "tools": [WEATHER_TOOL]}],
            "input": [developer, {"type": "message", "role": "user", "content": "Weather in Oslo?"}]}
    with scripted_gateway.http() as http:
        response = http.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["X-Mindgate-Ignored-Tools"] == "web_search"
    [call] = response.json()["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["namespace"] == "weather"
    [sent] = scripted.chat_bodies()
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize(("extra", "words"), [
    ({"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, "web_search"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}], "tool_choice": {"type": "file_search"}},
     "file_search"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input_file"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "schema"),
    ({"background": True}, "background"),
])
def test_what_cannot_be_served_is_a_clear_400(scripted_gateway: GatewayServer, extra: dict[str, Any],
                                              words: str) -> None:
    body = {"model": "scripted", "input": "hi", **extra}
    with scripted_gateway.http() as http:
        response = http.post("/v1/responses", json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]


@pytest.mark.parametrize("delta", ["Hello", ' wörld "quoted" \\ \n\t\x01\u2028', "😀 emoji", "</script>"])
def test_streamed_text_delta_is_the_generic_event_byte_for_byte(delta: str) -> None:
    """The per-chunk fast path of ``response.output_text.delta`` writes exactly what the generic event
    writer writes (same fields, order, escaping and sequence numbers), first and with its cached head."""
    events = ResponseEvents()
    events.feed(ChatChunk(content="first"))
    item = events._text
    assert item is not None
    index = events._index(item)
    for _ in range(2):
        start = events.sequence
        fast = events._text_delta(index, delta)
        events.sequence = start
        generic = events.event("response.output_text.delta", item_id=item["id"], output_index=index,
                               content_index=0, delta=delta, logprobs=[])
        assert fast == generic
        assert events.sequence == start + 1
