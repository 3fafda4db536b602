"""The OpenAI-compatible routes, exercised with the official ``openai`` SDK over real HTTP, backed by the
real llama.cpp server (behind a recording proxy), the in-process engine and the real MiniLM embedder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from metrics_helpers import sample
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers._base import Embedder

Serve = Callable[[Any], GatewayServer]
SAY_HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def gateway(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: Callable[..., AsyncMemory],
            minilm: Embedder) -> GatewayServer:
    config = MindgateConfig.from_dict({"gateway": {"memory": False}})
    return serve_gateway(create_app(config, chat=llama_chat(f"{llama_proxy.base_url}/v1"),
                                    memory=memory_factory(), embedder=minilm))


def _data_lines(raw: bytes) -> list[bytes]:
    return [line[len(b"data: "):] for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_chat_completion_through_the_sdk(gateway: GatewayServer, llama_proxy: RecordingProxy) -> None:
    client = gateway.openai()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=SAY_HI, max_tokens=8,
                                                           temperature=0)
    completion = raw.parse()
    assert isinstance(completion.choices[0].message.content, str) and completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert len(raw.headers["x-request-id"]) >= 16
    # any model name is served by the default chain; the body the upstream got is the caller's request
    [sent] = llama_proxy.chat_requests()
    assert sent["model"] == "smollm2" and sent["messages"] == SAY_HI and sent["max_tokens"] == 8
    # the response body is the upstream's own (pass-through)
    assert completion.id == json.loads(llama_proxy.responses[-1])["id"]


def test_stream_relays_the_upstream_bytes_unchanged(gateway: GatewayServer, llama_proxy: RecordingProxy) -> None:
    body = {"model": "smollm2", "messages": SAY_HI, "max_tokens": 12, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = b"".join(response.iter_raw())
    ours, upstream = _data_lines(received), _data_lines(llama_proxy.responses[-1])
    assert len(ours) > 3 and ours[-1] == b"[DONE]"
    assert ours == upstream  # every event payload byte-for-byte as the llama.cpp server sent it


def test_stream_through_the_sdk(gateway: GatewayServer) -> None:
    stream = gateway.openai().chat.completions.create(model="smollm2", messages=SAY_HI, max_tokens=12,
                                                      temperature=0, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(pieces) > 2 and "".join(pieces).strip()


def test_tools_and_response_format_reach_the_upstream(gateway: GatewayServer, llama_proxy: RecordingProxy) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}},
                                                              "required": ["city"]}}}]
    client = gateway.openai()
    client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                   tools=tools, tool_choice="auto", max_tokens=16, temperature=0)
    completion = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Give a JSON object with key a=1."}],
        response_format={"type": "json_object"}, max_tokens=16, temperature=0)
    sent_tools, sent_format = llama_proxy.chat_requests()
    assert sent_tools["tools"] == tools and sent_tools["tool_choice"] == "auto"
    assert sent_format["response_format"] == {"type": "json_object"}
    assert completion.choices[0].message.content is not None
    assert completion.choices[0].message.content.lstrip().startswith("{")  # the server's JSON grammar applied


def test_embeddings_match_the_embedder(gateway: GatewayServer, minilm: Embedder) -> None:
    client = gateway.openai()
    texts = ["I like jazz.", "The cat sleeps on the sofa."]
    by_sdk = client.embeddings.create(model="text-embedding-3-small", input=texts)  # the SDK asks for base64
    as_floats = client.embeddings.create(model="text-embedding-3-small", input=texts[0], encoding_format="float")
    direct = minilm.embed_batch(texts)
    assert [d.index for d in by_sdk.data] == [0, 1]
    assert np.allclose(np.array([d.embedding for d in by_sdk.data]), direct, atol=1e-6)
    assert np.allclose(np.array(as_floats.data[0].embedding), direct[0], atol=1e-6)
    assert by_sdk.model == "all-MiniLM-L6-v2" and by_sdk.usage.prompt_tokens > 0


@pytest.mark.parametrize("bad_input", [[[1, 2, 3]], [101, 102], []])
def test_token_arrays_and_empty_input_are_a_clear_400(gateway: GatewayServer, bad_input: Any) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gateway.openai().embeddings.create(model="any", input=bad_input)
    error = info.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
    assert ("token ids" in error["message"]) if bad_input else ("empty" in error["message"])


def test_error_shapes(gateway: GatewayServer) -> None:
    client = gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=[])
    assert info.value.status_code == 400 and "messages" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=SAY_HI, temperature=7)
    assert "temperature" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:  # unknown top-level fields pass through (see
        # test_gateway_compat.py); inside a message an unknown field is refused by name, not silently dropped
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi",
                                                                   "colour": "red"}])  # type: ignore[misc]
    assert "colour" in info.value.message
    with gateway.http() as http:
        for method, path, status in (("GET", "/v1/nothing", 404), ("DELETE", "/v1/chat/completions", 405)):
            response = http.request(method, path)
            assert response.status_code == status
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        response = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_request_body_limit(serve_gateway: Serve, llama_proxy: RecordingProxy,
                            memory_factory: Callable[..., AsyncMemory]) -> None:
    config = MindgateConfig.from_dict({"gateway": {"max_body_bytes": 2048}})
    server = serve_gateway(create_app(config, chat=llama_chat(f"{llama_proxy.base_url}/v1"), memory=memory_factory()))
    with pytest.raises(openai.APIStatusError) as info:
        server.openai().chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "x" * 4096}])
    assert info.value.status_code == 413 and "2048 bytes" in info.value.message
    assert llama_proxy.chat_requests() == []

    def chunked() -> Any:
        yield b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
        yield b"y" * 4096
        yield b'"}]}'

    with server.http() as http:
        response = http.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_unreachable_upstream_is_a_502_in_openai_shape(serve_gateway: Serve,
                                                       memory_factory: Callable[..., AsyncMemory]) -> None:
    from fixtures_servers import free_port

    dead = llama_chat(f"http://127.0.0.1:{free_port()}/v1")
    server = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=dead, memory=memory_factory()))
    client = server.openai()
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="smollm2", messages=SAY_HI)
    assert info.value.status_code == 502 and "not reachable" in info.value.message
    with pytest.raises(openai.InternalServerError):  # a stream that fails before its first chunk: a status too
        client.chat.completions.create(model="smollm2", messages=SAY_HI, stream=True)


def test_mid_stream_failure_ends_with_an_error_event(serve_gateway: Serve, llama_server_factory: Any,
                                                     memory_factory: Callable[..., AsyncMemory]) -> None:
    upstream = llama_server_factory(n_ctx=2048).start()
    server = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=llama_chat(upstream.base_url),
                                      memory=memory_factory()))
    body = {"model": "smollm2", "stream": True, "max_tokens": 1500, "temperature": 1.0,
            "messages": [{"role": "user", "content": "Write a very long story about the sea."}]}
    events: list[bytes] = []
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:].encode())
            if len(events) == 5:
                upstream.kill()  # the upstream crashes in the middle of the answer
    assert events[-1] == b"[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "api_connection_error"
    assert "before [DONE]" in error["message"] or "dropped the connection" in error["message"]
    # the SDK turns the error event into an exception instead of a silently short answer
    upstream.start()
    stream = server.openai().chat.completions.create(stream=True, **{k: v for k, v in body.items() if k != "stream"})
    with pytest.raises(openai.APIError):
        for index, _ in enumerate(stream):
            if index == 3:
                upstream.kill()


def test_in_process_engine_behind_the_gateway(serve_gateway: Serve, smollm: Any,
                                              memory_factory: Callable[..., AsyncMemory]) -> None:
    server = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=smollm, memory=memory_factory()))
    client = server.openai()
    completion = client.chat.completions.create(model="auto", messages=SAY_HI, max_tokens=8, temperature=0)
    assert completion.model == "SmolLM2-135M-Instruct" and completion.choices[0].message.content
    started = time.monotonic()
    stream = client.chat.completions.create(model="auto", messages=SAY_HI, max_tokens=8, temperature=0,
                                            stream=True)
    chunks = [c for c in stream if c.choices]
    assert chunks and time.monotonic() - started < 60
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_client_that_disconnects_stops_the_upstream_stream(serve_gateway: Serve, llama_server: Any,
                                                             memory_factory: Callable[..., AsyncMemory]) -> None:
    server = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=llama_chat(llama_server.base_url),
                                      memory=memory_factory()))
    body = {"model": "gone", "stream": True, "max_tokens": 600, "temperature": 1.0,
            "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}]}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=120) as response:
        for index, _ in enumerate(response.iter_lines()):
            if index == 6:
                break  # the client goes away after a few events
    deadline = time.monotonic() + 8
    completion = None
    while completion is None and time.monotonic() < deadline:
        completion = sample(httpx.get(f"{server.base_url}/metrics").text, "mindgate_tokens_total", model="other",
                            kind="completion")
        time.sleep(0.1)
    # the relay stopped pulling (and closed the upstream stream) right away, not after 600 tokens
    assert completion is not None and completion < 100
