"""The OpenAI surface's leniency and completeness, with the official ``openai`` SDK against the gateway:
sampling extras sent through ``extra_body`` reach OpenAI-compatible upstreams and are dropped for APIs
that reject them (the OpenAI contract fake answers unknown arguments with OpenAI's 400); ``include_usage``
gives one usage chunk on every target; ``/v1/completions`` is served natively by the llama.cpp server
(real), the local engine (real, in-process) and Ollama's generate API (contract fake), and is a clear 400
for a target without raw completion; ``/v1/embeddings`` honours ``model`` with named embedders; without API
keys only configured or loaded models are routable by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from fakes.cloud import OpenAIFake
from fakes.lmstudio import LMStudioFake
from fakes.ollama import OllamaFake
from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers import create_chat_model
from mindgate.providers._base import ChatModel, Embedder

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
EXTRAS = {"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1, "ttl": 60, "draft_model": "smollm2-draft"}


def _serve(serve: Serve, memory_factory: MakeMemory, chat: ChatModel) -> GatewayServer:
    return serve(create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}), chat=chat,
                            memory=memory_factory(None)))


@pytest.fixture
def llama_gateway(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> GatewayServer:
    return _serve(serve_gateway, memory_factory, llama_chat(f"{llama_proxy.base_url}/v1"))


def _usage_chunks(chunks: list[Any]) -> list[Any]:
    return [c for c in chunks if c.usage is not None]


def test_extras_pass_through_and_include_usage_on_the_llama_server(llama_gateway: GatewayServer,
                                                                   llama_proxy: RecordingProxy) -> None:
    client = llama_gateway.openai()
    answer = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4, extra_body=EXTRAS)
    assert answer.choices[0].message.content is not None
    sent = llama_proxy.chat_requests()[0]
    assert {k: sent[k] for k in EXTRAS} == EXTRAS  # unchanged, as the SDK sent them

    chunks = list(client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=4, stream=True, stream_options={"include_usage": True}))
    [usage] = _usage_chunks(chunks)
    assert chunks[-1] is usage and usage.choices == []
    assert usage.usage.prompt_tokens > 0 and usage.usage.completion_tokens > 0
    assert llama_proxy.chat_requests()[1]["stream_options"] == {"include_usage": True}
    # without include_usage, no usage chunk
    plain = list(client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=4, stream=True))
    assert not _usage_chunks(plain)


def test_known_fields_stay_validated_beside_extras(llama_gateway: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        llama_gateway.openai().chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], temperature=5, extra_body=EXTRAS)


def test_extras_are_dropped_for_openai_reasoning_effort_is_sent_and_usage_comes(serve_gateway: Serve,
                                                             memory_factory: MakeMemory) -> None:
    with OpenAIFake() as fake:
        chat = create_chat_model("openai", dict(model="gpt-4o-mini", api_key=fake.api_key,
                                                          openai_base_url=f"{fake.base_url}/v1"))
        gateway = _serve(serve_gateway, memory_factory, chat)
        client = gateway.openai()
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                                extra_body=EXTRAS)
        assert answer.choices[0].message.content
        sent = fake.requests_to("/v1/chat/completions")[0].json
        assert not set(EXTRAS) & set(sent)  # OpenAI would have answered 400 "Unrecognized request argument"
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", stream=True, extra_body=EXTRAS,
                                                     messages=[{"role": "user", "content": "Hi"}],
                                                     stream_options={"include_usage": True}))
        assert len(_usage_chunks(chunks)) == 1
        with pytest.raises(openai.BadRequestError, match="openai:gpt-4o-mini has no raw text completion"):
            client.completions.create(model="gpt-4o-mini", prompt="Once upon a time")
        # reasoning effort is one of OpenAI's own fields: sent, from chat and from the Responses bridge
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                       reasoning_effort="low")
        client.responses.create(model="gpt-4o-mini", input="Hi", reasoning={"effort": "high"}, store=False)
        efforts = [r.json.get("reasoning_effort") for r in fake.requests_to("/v1/chat/completions")]
        assert efforts[-2:] == ["low", "high"] and efforts[0] is None


def test_the_embedded_local_engine_serves_every_api(serve_gateway: Serve, memory_factory: MakeMemory,
                                                    smollm: ChatModel) -> None:
    gateway = _serve(serve_gateway, memory_factory, smollm)
    chunks = list(gateway.openai().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True}, extra_body={"top_k": 1, "repeat_penalty": 1.2, "ttl": 5}))
    [usage] = _usage_chunks(chunks)
    assert usage.usage.prompt_tokens > 0 and usage.usage.completion_tokens > 0  # computed by the gateway

    reply = gateway.openai().responses.create(model="auto", input="Hi", max_output_tokens=4,
                                              reasoning={"effort": "low"})
    assert reply.output_text and reply.usage is not None and reply.reasoning is not None
    text = gateway.openai().completions.create(model="auto", prompt="The capital of France is", max_tokens=4,
                                               temperature=0, extra_body={"top_k": 1})
    assert text.object == "text_completion" and text.choices[0].text and text.usage.completion_tokens > 0


def test_completions_on_the_llama_server(llama_gateway: GatewayServer, llama_proxy: RecordingProxy) -> None:
    client = llama_gateway.openai()
    done = client.completions.create(model="smollm2", prompt=["1, 2, 3,", "a, b, c,"], max_tokens=4,
                                     temperature=0, echo=True, extra_body={"top_k": 1})
    assert [c.index for c in done.choices] == [0, 1] and done.choices[0].text.startswith("1, 2, 3,")  # echo
    assert done.usage is not None and done.usage.prompt_tokens > 0
    [first, _] = [r.json for r in llama_proxy.requests if r.path == "/v1/completions"]
    assert first["prompt"] == "1, 2, 3," and first["top_k"] == 1 and first["echo"] is True

    chunks = list(client.completions.create(model="smollm2", prompt="1, 2, 3,", max_tokens=4, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert len([c for c in chunks if c.usage is not None]) == 1 and chunks[-1].usage is not None
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.completions.create(model="smollm2", prompt=[1, 2, 3], max_tokens=4)


def test_completions_on_ollama_generate_raw(serve_gateway: Serve, memory_factory: MakeMemory,
                                            ollama_fake: OllamaFake) -> None:
    chat = create_chat_model("ollama", dict(model="llama3.2", ollama_base_url=ollama_fake.base_url))
    client = _serve(serve_gateway, memory_factory, chat).openai()
    done = client.completions.create(model="llama3.2", prompt="Once upon a time", max_tokens=8, suffix=" The end.",
                                     extra_body={"top_k": 5, "ttl": 3})
    assert done.choices[0].text and done.usage is not None and done.usage.completion_tokens > 0
    sent = ollama_fake.requests_to("/api/generate")[-1].json
    assert sent["raw"] is True and sent["prompt"] == "Once upon a time" and sent["suffix"] == " The end."
    assert sent["options"] == {"num_predict": 8, "top_k": 5}  # ttl is not an Ollama option: dropped
    streamed = list(client.completions.create(model="llama3.2", prompt="Once upon a time", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices).strip()
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model="llama3.2", prompt="x", echo=True)


def test_embeddings_honour_model_with_named_embedders(serve_gateway: Serve, memory_factory: MakeMemory,
                                                      minilm: Embedder) -> None:
    config = MindgateConfig.from_dict({"gateway": {"memory": False},
                                       "embedders": {"mini": {"provider": "local", "config": {"batch_size": 8}}}})
    client = serve_gateway(create_app(config, chat=llama_chat("http://127.0.0.1:9/v1"), embedder=minilm,
                                      memory=memory_factory(None))).openai()
    named = client.embeddings.create(model="mini", input=["hello"])
    default = client.embeddings.create(model="default", input=["hello"])
    assert len(named.data[0].embedding) == len(default.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError, match=r"default \(all-MiniLM-L6-v2\), mini"):
        client.embeddings.create(model="text-embedding-3-small", input=["hello"])


def test_only_configured_or_loaded_models_are_routable_by_name(serve_gateway: Serve, memory_factory: MakeMemory,
                                                               lmstudio_fake: LMStudioFake) -> None:
    def gateway(**settings: Any) -> openai.OpenAI:
        config = MindgateConfig.from_dict({
            "providers": {"studio": {"provider": "lmstudio", "config": {
                "lmstudio_base_url": f"{lmstudio_fake.base_url}/v1", "model": "qwen2.5-7b-instruct"}}},
            "gateway": {"memory": False, **settings}})
        client = serve_gateway(create_app(config, memory=memory_factory(None))).openai()
        listed = {m.id: m for m in client.models.list()}  # waits for the first catalog listing
        assert "qwen2-vl-2b-instruct" in listed
        return client

    hi = [{"role": "user", "content": "Hi"}]
    strict = gateway()
    assert strict.chat.completions.create(model="qwen2.5-7b-instruct", messages=hi).choices  # named in config
    with pytest.raises(openai.PermissionDeniedError, match="allow_any_model"):
        strict.chat.completions.create(model="qwen2-vl-2b-instruct", messages=hi)  # downloaded, not loaded
    lenient = gateway(allow_any_model=True)
    assert lenient.chat.completions.create(model="qwen2-vl-2b-instruct", messages=hi).choices  # JIT-loaded
