"""Context policies through the gateway, with the official ``openai`` SDK, on 100-turn conversations.

Upstreams: the real llama.cpp server started with ``--n_ctx 1024`` behind a recording proxy (so the tests
see exactly what it received), and the in-process engine (a recording subclass). The long histories are
built client-side, so each policy costs one real request (plus the summariser's calls); a few consecutive
turns show the summary being reused."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import openai
import pytest

from context_helpers import FACT, QUESTION, SYSTEM, check_tool_pairs, history, turn
from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from fixtures_servers import LlamaServer
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers._base import ChatResponse, Message
from mindgate.providers.local import LlamaCppChatModel
from mindgate.routing import Router, Target

WINDOW = 1024
Serve = Callable[[Any], GatewayServer]


def ask(conversation: list[Message], question: str = QUESTION) -> list[Message]:
    return [*conversation, {"role": "user", "content": question}]


def fields(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split())


@pytest.fixture(scope="module")
def llama_1k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(n_ctx=WINDOW, log_dir=tmp_path_factory.mktemp("llama-1k")).start()
    yield server
    server.stop()


@pytest.fixture
def proxy_1k(llama_1k: LlamaServer) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(f"http://127.0.0.1:{llama_1k.port}")
    proxy.start()
    yield proxy
    proxy.stop()


def is_summariser_call(body: dict[str, Any]) -> bool:
    return str(body["messages"][0]["content"]).startswith("You summarise conversations")


def test_each_policy_on_a_100_turn_conversation_against_the_real_server(
        serve_gateway: Serve, proxy_1k: RecordingProxy, memory_factory: Callable[..., AsyncMemory]) -> None:
    router = Router([Target(llama_chat(f"{proxy_1k.base_url}/v1"), name="llama", context_length=WINDOW)],
                    name="llama")
    config = MindgateConfig.from_dict({"context": {"summary_tokens": 64}}, env=False)
    gateway = serve_gateway(create_app(config, chat=router, memory=memory_factory(), warm_up=False))
    client = gateway.openai()
    conversation = ask(history(100))

    # error: a 400 context_length_exceeded naming the tokens needed and available, without an upstream call
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="llama", messages=conversation, max_tokens=4,  # type: ignore[arg-type]
                                       extra_headers={"X-Mindgate-Context": "error"})
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "context of 1024 tokens" in error["message"] and "the conversation needs" in error["message"]
    assert proxy_1k.chat_requests() == []

    # truncate (asked for in the body): 200, the system prompt, the latest turn, whole tool rounds
    raw = client.chat.completions.with_raw_response.create(
        model="llama", messages=conversation, max_tokens=1,  # type: ignore[arg-type]
        extra_body={"mindgate": {"context": "truncate"}})
    assert raw.http_response.status_code == 200
    report = fields(raw.headers["x-mindgate-context"])
    sent = proxy_1k.chat_requests()[-1]["messages"]
    assert report["policy"] == "truncate" and int(report["dropped"]) > 0 and report["tokens"].endswith("/1024")
    assert sent[0]["content"] == SYSTEM and sent[-1]["content"] == QUESTION and sent[1]["role"] == "user"
    check_tool_pairs(sent)
    assert raw.parse().usage.prompt_tokens <= int(report["tokens"].split("/")[0])  # counted exactly or above

    # summarize (the default here: the chain's loopback target is the summariser): turn 1's fact reaches
    # the prompt, and the next turns reuse the summary
    raw = client.chat.completions.with_raw_response.create(model="llama", messages=conversation,  # type: ignore[arg-type]
                                                           max_tokens=1)
    report = fields(raw.headers["x-mindgate-context"])
    assert report["policy"] == "summarize" and int(report["summarized"]) > 0
    summariser_calls = sum(map(is_summariser_call, proxy_1k.chat_requests()))
    assert summariser_calls >= 1
    sent = proxy_1k.chat_requests()[-1]["messages"]
    assert "Biscuit" in sent[0]["content"] and sent[-1]["content"] == QUESTION
    check_tool_pairs(sent)
    for i in range(101, 104):
        conversation = [*conversation[:-1], *turn(i), {"role": "user", "content": QUESTION}]
        raw = client.chat.completions.with_raw_response.create(model="llama", messages=conversation,  # type: ignore[arg-type]
                                                               max_tokens=1)
        assert raw.http_response.status_code == 200
        assert "Biscuit" in proxy_1k.chat_requests()[-1]["messages"][0]["content"]
    assert sum(map(is_summariser_call, proxy_1k.chat_requests())) == summariser_calls  # reused, not redone

    # a stream says what was done too (the summary's prefix is still in the server's prompt cache: cheap)
    with client.chat.completions.with_streaming_response.create(
            model="llama", messages=conversation, max_tokens=1, stream=True) as streamed:  # type: ignore[arg-type]
        assert fields(streamed.headers["x-mindgate-context"])["policy"] == "summarize"
        assert "".join(streamed.iter_lines())
    assert sum(map(is_summariser_call, proxy_1k.chat_requests())) == summariser_calls


class RecordingEngine(LlamaCppChatModel):
    """The in-process engine, recording the messages of every call (what the engine receives)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.received: list[list[Message]] = []

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        self.received.append(list(messages))
        return await super().acomplete(messages, **options)


ENGINE_WINDOW = 512  # small, so each prompt the engine evaluates is short


@pytest.fixture(scope="module")
def engine() -> Iterator[RecordingEngine]:
    model = RecordingEngine(n_ctx=ENGINE_WINDOW, n_threads=1)
    yield model
    model.unload()


def test_memory_and_truncate_on_the_in_process_engine(serve_gateway: Serve, engine: RecordingEngine,
                                                      memory_factory: Callable[..., AsyncMemory]) -> None:
    config = MindgateConfig.from_dict({"context": {"policy": "memory"}}, env=False)
    gateway = serve_gateway(create_app(config, chat=Router([engine], name="engine"), memory=memory_factory(),
                                       warm_up=False))
    client = gateway.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="engine", messages=ask(history(100)), max_tokens=1,  # type: ignore[arg-type]
        extra_headers={"X-Mindgate-User": "zorblax"})
    report = fields(raw.headers["x-mindgate-context"])
    assert report["policy"] == "memory" and int(report["remembered"]) > 0 and int(report["recalled"]) >= 1
    sent = engine.received[-1]
    assert FACT in sent[0]["content"] and sent[-1]["content"] == QUESTION  # recalled from memory
    check_tool_pairs(sent)
    tokens, window = report["tokens"].split("/")
    assert window == str(ENGINE_WINDOW) and int(tokens) <= ENGINE_WINDOW - 1 - 64  # the engine's own count

    # a request may choose another policy than the config's
    raw = client.chat.completions.with_raw_response.create(
        model="engine", messages=ask(history(100)), max_tokens=1,  # type: ignore[arg-type]
        extra_headers={"X-Mindgate-Context": "truncate"})
    assert fields(raw.headers["x-mindgate-context"])["policy"] == "truncate"
    check_tool_pairs(engine.received[-1])


def test_responses_and_previous_response_id_chains_are_fitted(serve_gateway: Serve,
                                                               memory_factory: Callable[..., AsyncMemory]) -> None:
    """On a scripted upstream (its words do not matter; what it receives does): OpenAI's ``truncation``
    chooses the policy, and a ``previous_response_id`` chain that outgrows the window is fitted too."""
    from routing_helpers import ScriptedServer, chat_model

    upstream = ScriptedServer(reply="ok").start()
    try:
        router = Router([Target(chat_model(f"{upstream.base_url}/v1"), name="small", context_length=WINDOW)],
                        name="small")
        gateway = serve_gateway(create_app(MindgateConfig.from_dict({}, env=False), chat=router,
                                           memory=memory_factory(), warm_up=False))
        client = gateway.openai()
        spoken = [{"role": m["role"], "content": m["content"]} for m in history(100)[1:]
                  if m["role"] in ("user", "assistant") and m.get("content") and not m.get("tool_calls")]
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="small", input=[*spoken, {"role": "user", "content": QUESTION}],
                                    truncation="disabled", max_output_tokens=16)  # type: ignore[arg-type]
        assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "context_length_exceeded"
        assert upstream.chat_requests == 0

        first = client.responses.with_raw_response.create(model="small", input=spoken[:40], truncation="auto",
                                                          max_output_tokens=16)  # type: ignore[arg-type]
        assert fields(first.headers["x-mindgate-context"])["policy"] == "truncate"
        chained = first.parse().id
        for start in range(40, len(spoken), 40):  # the chain grows past the window, turn by turn
            raw = client.responses.with_raw_response.create(model="small", input=spoken[start:start + 40],
                                                            previous_response_id=chained,
                                                            max_output_tokens=16)  # type: ignore[arg-type]
            assert raw.http_response.status_code == 200
            chained = raw.parse().id
        # the default policy: summarize (the chain's loopback target summarises); turn 1's fact survives
        report = fields(raw.headers["x-mindgate-context"])
        assert report["policy"] == "summarize" and int(report["dropped"]) > 0
        assert int(report["tokens"].split("/")[0]) <= WINDOW - 16 - 64
        sent = upstream.requests_to("/v1/chat/completions")[-1].json["messages"]
        assert sent[-1]["content"] == spoken[-1]["content"] and "Biscuit" in sent[0]["content"]
    finally:
        upstream.stop()
