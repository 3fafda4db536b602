"""A server's own ``/v1/responses`` at the provider level (``responses_api`` in the provider config), against
the CONTRACT FAKE of a Responses API server (tests/fakes/responses_api.py) and the LM Studio contract fake
(an LM Studio before 0.3.29, which answers unknown routes with HTTP 200 "Unexpected endpoint")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fakes.lmstudio import LMStudioFake
from fakes.responses_api import ResponsesAPIFake
from mindgate._sync import run_sync
from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError, NativeResponsesUnavailable, NetworkError, ProviderError
from mindgate.providers import create_chat_model
from mindgate.providers._base import ChatModel


@pytest.fixture
def fake() -> Iterator[ResponsesAPIFake]:
    server = ResponsesAPIFake()
    server.start()
    yield server
    server.stop()


async def _events(model: ChatModel, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [event async for event in model.aresponses_stream(body)]


def test_ollama_passes_through_at_its_root_with_the_configs_defaults(fake: ResponsesAPIFake) -> None:
    model = create_chat_model("ollama", {"ollama_base_url": fake.base_url, "model": "gpt-4o-mini",
                                         "responses_api": "native", "temperature": 0.2, "max_tokens": 33})
    assert model.passes_responses
    answer = run_sync(model.aresponses({"model": "whatever", "input": "hi", "top_p": 0.5}))
    assert answer["object"] == "response" and answer["output"][0]["content"][0]["text"] == "echo: hi"
    [sent] = fake.response_bodies()  # Ollama's OpenAI routes live under /v1 of its root
    assert sent == {"model": "gpt-4o-mini", "input": "hi", "top_p": 0.5, "temperature": 0.2, "max_output_tokens": 33}

    events = run_sync(_events(model, {"input": "stream it"}))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    fake.cut_after = 3
    with pytest.raises(NetworkError, match=r"dropped the connection|before its final event"):
        run_sync(_events(model, {"input": "cut"}))


def test_bridge_is_the_default_and_providers_without_the_api_refuse_the_key() -> None:
    plain = create_chat_model("openai_compatible", {"base_url": "http://127.0.0.1:9/v1", "model": "m"})
    assert not plain.passes_responses
    with pytest.raises(NativeResponsesUnavailable):
        run_sync(create_chat_model("openai", {"api_key": "sk-x"}).aresponses({"input": "hi"}))
    with pytest.raises((ConfigurationError, ValueError), match="responses_api"):
        MindgateConfig.from_dict({"llm": {"provider": "gemini", "config": {"responses_api": "native"}}}, env=False)
    with pytest.raises((ConfigurationError, ValueError), match="bridge"):
        MindgateConfig.from_dict({"llm": {"provider": "openai", "config": {"responses_api": "always"}}}, env=False)


def test_an_lm_studio_without_the_route_is_learned_under_auto_and_named_under_native() -> None:
    with LMStudioFake() as lmstudio:
        url = f"{lmstudio.base_url}/v1"
        auto = create_chat_model("lmstudio", {"lmstudio_base_url": url, "model": "qwen2.5-7b-instruct",
                                              "responses_api": "auto"})
        assert auto.passes_responses
        with pytest.raises(NativeResponsesUnavailable, match="Unexpected endpoint"):
            run_sync(auto.aresponses({"input": "hi"}))
        assert not auto.passes_responses  # remembered for this server: bridged from now on

        native = create_chat_model("lmstudio", {"lmstudio_base_url": url, "model": "qwen2.5-7b-instruct",
                                                "responses_api": "native"})
        with pytest.raises(ProviderError, match="responses_api") as error:
            run_sync(native.aresponses({"input": "hi"}))
        assert not isinstance(error.value, NativeResponsesUnavailable) and "0.3.29" in str(error.value)
