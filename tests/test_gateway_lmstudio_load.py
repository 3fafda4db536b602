"""Concurrent first requests for an unloaded LM Studio model cause exactly one load, on the gateway's chat
path: 20 concurrent chat requests through the official `openai` SDK -> 1 load request at LM Studio's
contract fake. Sent straight to the fake, the same burst makes LM Studio's JIT loading load it many times
(the behaviour mindgate guards against)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import openai

from fakes import LMStudioFake
from fixtures_gateway import GatewayServer
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.providers._base import Embedder

QWEN = "qwen2.5-7b-instruct"
BURST = 20


async def _burst(base_url: str, api_key: str = "unused") -> list[str]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    try:
        answers = await asyncio.gather(*(client.chat.completions.create(
            model=QWEN, messages=[{"role": "user", "content": f"question {i}"}], max_tokens=8) for i in range(BURST)))
    finally:
        await client.close()
    return [a.choices[0].message.content or "" for a in answers]


def test_direct_burst_makes_lmstudio_load_many_times() -> None:
    with LMStudioFake(load_delay=0.3, auto_evict=False) as fake:
        asyncio.run(_burst(f"{fake.base_url}/v1"))
        assert len(fake.loaded) > 1  # JIT loading raced: several instances of one model


def test_twenty_concurrent_chat_requests_cause_one_load(serve_gateway: Callable[[Any], GatewayServer],
                                                        minilm: Embedder) -> None:
    with LMStudioFake(load_delay=0.3, auto_evict=False) as fake:
        config = MindgateConfig.from_dict({
            "llm": {"provider": "lmstudio", "config": {"model": QWEN, "lmstudio_base_url": f"{fake.base_url}/v1"}},
            "embedder": {"provider": "lmstudio", "config": {"lmstudio_base_url": f"{fake.base_url}/v1"}},
            "gateway": {"memory": False},
        }, env=False)
        gateway = serve_gateway(create_app(config, embedder=minilm, warm_up=False))
        answers = asyncio.run(_burst(gateway.v1))
        assert answers == [f"echo: question {i}" for i in range(BURST)]
        assert len(fake.requests_to("/api/v1/models/load")) == 1
        assert [i.id for i in fake.loaded] == [QWEN] and not fake.loaded[0].jit
        assert len(fake.requests_to("/v1/chat/completions")) == BURST
        assert len(fake.requests_to("/api/v1/models")) < BURST // 2  # checked once per model, not per request
        status = httpx.get(f"{gateway.base_url}/ui/api/models?refresh=true", timeout=60).json()
        assert next(m for m in status["models"] if m["id"] == QWEN)["state"] == "loaded"
