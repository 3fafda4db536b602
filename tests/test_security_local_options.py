"""Options the OpenAI schema accepts but the in-process engine cannot serve are a 400 naming the option and
the target (never a 503 with exception text), and they never trip a breaker; shapes the engine can serve
by adapting (text parts, an assistant turn holding only tool calls) are served. Real SmolLM2 GGUF in
process, behind a real Router, through the gateway with the official SDK."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from fixtures_gateway import GatewayServer
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.providers.local import LlamaCppChatModel
from mindgate.routing._router import Router
from mindgate.routing._targets import ChatTargets

Serve = Callable[..., GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def local_gateway(serve_gateway: Serve, memory_factory: MakeMemory, smollm: LlamaCppChatModel) -> GatewayServer:
    router = Router([smollm], name="local", breaker_failures=1)
    app = create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}), chat=ChatTargets(router),
                     memory=memory_factory(), warm_up=False)
    return serve_gateway(app)


def _breaker(server: GatewayServer) -> str:
    with server.http() as http:
        [chain] = [c for c in http.get("/ui/api/routing").json()["chains"] if c["name"] == "auto"]
        return str(chain["targets"][0]["state"])


@pytest.mark.parametrize(("extra", "named"), [
    ({"n": 3}, "`n`=3"),
    ({"logit_bias": {"99999999": 5}}, "token id 99999999 is outside the vocabulary"),
])
def test_an_option_the_engine_cannot_serve_is_a_400_naming_it(local_gateway: GatewayServer, extra: dict[str, object],
                                                              named: str) -> None:
    client = local_gateway.openai()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=HI, max_tokens=2, extra_body=extra)
    message = info.value.message
    assert named in message and "local:" in message, message
    assert "Traceback" not in message and "unexpected keyword" not in message
    assert _breaker(local_gateway) == "closed"


def test_an_image_part_is_a_400_naming_the_part_and_the_target(local_gateway: GatewayServer) -> None:
    image = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    with pytest.raises(openai.BadRequestError) as info:
        local_gateway.openai().chat.completions.create(model="auto", messages=image, max_tokens=2)  # type: ignore[arg-type]
    assert "'image_url'" in info.value.message and "local:" in info.value.message
    assert _breaker(local_gateway) == "closed"


def test_shapes_the_engine_can_serve_by_adapting_are_served(local_gateway: GatewayServer) -> None:
    client = local_gateway.openai()
    turns = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Rome?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 24 C"},
    ]
    answer = client.chat.completions.create(model="auto", messages=turns, max_tokens=4, n=1)  # type: ignore[arg-type]
    assert answer.choices[0].message.role == "assistant"
    assert client.chat.completions.create(model="auto", messages=HI, max_tokens=2,  # type: ignore[arg-type]
                                          logit_bias={"12": 1}).choices
    assert _breaker(local_gateway) == "closed"
