"""Real client libraries against the gateway on a loopback port: the ``openai-agents`` SDK with its default
(Responses API) model running a tool-calling agent on a SCRIPTED UPSTREAM (tests/fakes/scripted.py: a 135M
model cannot be relied on to call a tool), and LangChain's ``ChatOpenAI`` with the Responses API on and off
on the real llama.cpp server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from agents_helpers import run_weather_agent
from fakes.scripted import ScriptedUpstream, ToolCall
from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream([ToolCall("get_weather", {"city": "Oslo"}), "It is sunny in Oslo."]) as upstream:
        yield upstream


def test_an_openai_agents_run_calls_its_function_tool(serve_gateway: Serve, scripted: ScriptedUpstream,
                                                      memory_factory: MakeMemory) -> None:
    chat = OpenAICompatChatModel(OpenAICompatClient(f"{scripted.base_url}/v1"), "scripted")
    gateway = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory(None)))
    called, result = run_weather_agent(gateway.v1, "scripted")
    assert called == ["Oslo"] and result.final_output == "It is sunny in Oslo."
    # the SDK's second call carried the tool's result back as a tool message for the upstream
    second = scripted.chat_bodies()[1]["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["content"] == "sunny, 21 C"
    assert second[0] == {"role": "system", "content": "Answer with the weather tool."}


@pytest.mark.parametrize("responses_api", [False, True])
def test_langchain_chat_openai(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory,
                               responses_api: bool) -> None:
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    gateway = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory(None)))
    llm = ChatOpenAI(model="smollm2", base_url=gateway.v1, api_key="unused", max_tokens=8, temperature=0,
                     max_retries=0, use_responses_api=responses_api)
    answer = llm.invoke("Say hello.")
    assert answer.text.strip()
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    streamed = "".join(chunk.text for chunk in llm.stream("Say hello."))
    assert streamed.strip()
    [first, *_] = llama_proxy.chat_requests()
    assert first["max_tokens"] == 8 and first["messages"][-1]["content"] == "Say hello."
