"""Routing by fit on the real in-process engine: the shipped SmolLM2 GGUF loaded by llama.cpp at different
context sizes (different memory needs) and under different file names (different models), with free
memory from the labelled fake resource feed (tests/fakes/resources.py) because the test cannot make this
machine run short of memory. Loads, unloads and answers are real."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.lmstudio import LMStudioFake
from fakes.resources import FakeResourceFeed, GiB, MiB
from fixtures_gateway import GatewayServer
from mindgate._assets import default_gguf_path
from mindgate.config import MindgateConfig
from mindgate.errors import RoutingError
from mindgate.gateway._app import create_app
from mindgate.models._catalog import Endpoint, ModelCatalog
from mindgate.models._decisions import DecisionLog
from mindgate.providers import create_chat_model
from mindgate.providers._base import ChatModel, Embedder
from mindgate.providers._lazy import LazyChatModel
from mindgate.providers.local import LlamaCppChatModel
from mindgate.providers.local._pool import LocalModelPool
from mindgate.routing._placement import Placement
from mindgate.routing._router import Router, Target
from mindgate.routing._trace import RouteTrace, tracing

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three names for the shipped GGUF (hard links where the file system allows, else copies)."""
    folder = tmp_path_factory.mktemp("ggufs")
    out = {}
    for name in ("smol-a", "smol-b", "smol-c"):
        path = folder / f"{name}.gguf"
        try:
            os.link(default_gguf_path(), path)
        except OSError:
            shutil.copyfile(default_gguf_path(), path)
        out[name] = path
    return out


@pytest.fixture
def pool() -> Iterator[LocalModelPool]:
    pool = LocalModelPool(n_threads=1, check_fit=False)
    yield pool
    pool.close()


def model(path: Path, n_ctx: int, pool: LocalModelPool, **kwargs: object) -> LlamaCppChatModel:
    return LlamaCppChatModel(path, n_ctx=n_ctx, n_threads=1, pool=pool, defaults={"max_tokens": 2}, **kwargs)


def need(placement: Placement, chat: LlamaCppChatModel) -> int:
    footprint = placement.footprint(chat)
    assert footprint is not None
    return footprint.estimate.total_bytes


def loaded(pool: LocalModelPool) -> set[str]:
    return {i.id for i in pool.instances()}


def routed(router: Router) -> RouteTrace:
    """One request through ``router``; the route trace it left."""

    async def call() -> RouteTrace:
        with tracing() as trace:
            await router.acomplete(HI)
        return trace

    return asyncio.run(call())


def test_fits_loads_and_too_big_falls_back_with_the_reason(ggufs: dict[str, Path],
                                                                 pool: LocalModelPool) -> None:
    big, small = model(ggufs["smol-a"], 8192, pool), model(ggufs["smol-b"], 512, pool)
    feed = FakeResourceFeed(0)
    placement = Placement(feed, pool=pool, decisions=DecisionLog())
    assert need(placement, big) - need(placement, small) > 100 * MiB  # the KV cache of 7680 more tokens
    feed.push(need(placement, small) + 50 * MiB)  # room for the small one only
    router = Router([Target(big, name="big"), Target(small, name="small")], name="sized", placement=placement)
    trace = routed(router)
    assert trace.served == "small" and trace.action.startswith("load (")
    [(skipped, reason)] = trace.skipped
    assert skipped == "big" and "smol-a@ctx8192 does not fit" in reason and "free" in reason
    assert loaded(pool) == {"smol-b@ctx512"}
    assert [d.action for d in placement.decisions.recent()] == ["load", "skip"]
    header = trace.header()
    assert header is not None and header.startswith("small; load (needs ") and "skipped big: smol-a@ctx8192" in header

    feed.push(50 * MiB)  # the reading now shows the small model's memory in use
    trace = routed(router)
    assert trace.action == "loaded" and len(placement.decisions.recent()) == 3  # one more skip of big

    feed.push(0)  # nothing fits and nothing idle could make room: a routing error naming memory
    pool.unload()
    with pytest.raises(RoutingError) as caught:
        asyncio.run(router.acomplete(HI))
    assert "does not fit" in caught.value.message and "free memory" in (caught.value.hint or "")


def test_idle_models_are_unloaded_least_recently_used_first(ggufs: dict[str, Path],
                                                                  pool: LocalModelPool) -> None:
    first, second = model(ggufs["smol-a"], 512, pool), model(ggufs["smol-b"], 512, pool)
    wanted = model(ggufs["smol-c"], 1024, pool)
    feed = FakeResourceFeed(0)
    placement = Placement(feed, pool=pool, decisions=DecisionLog())
    first.complete(HI)
    time.sleep(0.01)
    second.complete(HI)  # used last: kept
    feed.push(need(placement, wanted) - need(placement, first) // 2)  # short by half of one idle model
    router = Router([Target(wanted, name="wanted")], name="one", placement=placement)
    trace = routed(router)
    assert loaded(pool) == {"smol-b@ctx512", "smol-c@ctx1024"}
    assert trace.action.startswith("load after unloading") and "unloaded smol-a@ctx512" in trace.action
    unload = next(d for d in placement.decisions.recent() if d.action == "unload")
    assert unload.target == "smol-a@ctx512" and "least recently used" in unload.reason


def test_pinned_models_are_never_unloaded_to_make_room(ggufs: dict[str, Path], pool: LocalModelPool) -> None:
    first, second = model(ggufs["smol-a"], 512, pool), model(ggufs["smol-b"], 512, pool)
    wanted = model(ggufs["smol-c"], 1024, pool)
    feed = FakeResourceFeed(0)
    placement = Placement(feed, pool=pool, pinned={"smol-a"}, decisions=DecisionLog())
    first.complete(HI)
    second.complete(HI)
    feed.push(need(placement, wanted) - need(placement, first) // 2)
    verdict = asyncio.run(placement.admit(wanted, target="wanted", chain="one"))
    assert verdict.ok and verdict.evicted == ("smol-b@ctx512",)  # the older one is pinned
    feed.push(0)
    pool.unload(ggufs["smol-c"])
    verdict = asyncio.run(placement.admit(wanted, target="wanted", chain="one"))
    assert not verdict.ok and "kept loaded: smol-a@ctx512 (pinned)" in verdict.reason
    assert loaded(pool) == {"smol-a@ctx512"}


def test_tiers_switch_a_real_chain_down_under_pressure_and_back(ggufs: dict[str, Path],
                                                                      pool: LocalModelPool) -> None:
    big, small = model(ggufs["smol-a"], 4096, pool), model(ggufs["smol-b"], 256, pool)
    feed = FakeResourceFeed(4096 * MiB)
    placement = Placement(feed, pool=pool, decisions=DecisionLog())
    router = Router([Target(big, name="big", min_free_memory=2048 * MiB),
                     Target(small, name="small", min_free_memory=None)], name="tiered", placement=placement,
                    tier_hysteresis=0.1, tier_recover_after=20)
    trace = routed(router)
    assert trace.served == "big"
    feed.push(1024 * MiB)  # pressure (the big model's own memory counted back in: still under 2 GiB)
    trace = routed(router)
    assert trace.served == "small" and trace.skipped[0][0] == "big" and "memory pressure" in trace.skipped[0][1]
    feed.push(4096 * MiB, advance=5)
    trace = routed(router)
    assert trace.served == "small"  # recovery waits out the hysteresis
    feed.push(4096 * MiB, advance=30)
    trace = routed(router)
    assert trace.served == "big"
    assert [d.action for d in placement.decisions.recent() if d.action.startswith("tier")] == ["tier-up", "tier-down"]
    asyncio.run(router.aclose())


def test_the_local_engine_chat_path_honours_the_ttl(pool: LocalModelPool) -> None:
    chat = model(default_gguf_path(), 256, pool, ttl=0.3)
    chat.complete(HI)
    [instance] = pool.instances()
    assert instance.ttl == 0.3
    deadline = time.monotonic() + 10
    while pool.instances() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.instances() == []


def test_config_wires_ttl_tiers_and_placement() -> None:
    from mindgate.routing._chains import router_from_config

    config = MindgateConfig.from_dict({
        "llm": {"provider": "local", "config": {"ttl": 600, "n_ctx": 512}},
        "resources": {"pinned": ["SmolLM2-135M-Instruct"], "reserve": "256MiB", "tier_recover_after": 5},
        "routing": {"chains": {"sized": {"targets": [{"endpoint": "local", "min_free_memory": "3GiB"},
                                                     {"endpoint": "local", "name": "local-2"}]}}},
    }, env=False)
    assert create_chat_model("local", config.llm.config).ttl == 600  # type: ignore[attr-defined]
    router = router_from_config("sized", config)
    assert router.placement is not None and router.placement.reserve_bytes == 256 * MiB
    assert router.tiers is not None and router.tiers.recover_after == 5
    assert router.tiers.status()["tiers"][0]["min_free_bytes"] == 3 * 2**30
    router.tiers.close()


def test_the_gateway_says_why_in_the_route_header(ggufs: dict[str, Path], pool: LocalModelPool, minilm: Embedder,
                                                   serve_gateway: Callable[[Any], GatewayServer]) -> None:
    """The official SDK sees ``X-Mindgate-Route`` on plain and streamed answers."""
    big, small = model(ggufs["smol-a"], 8192, pool), model(ggufs["smol-b"], 512, pool)
    feed = FakeResourceFeed(0)
    placement = Placement(feed, pool=pool, decisions=DecisionLog())
    feed.push(need(placement, small) + 50 * MiB)
    router = Router([Target(big, name="big"), Target(small, name="small")], name="sized", placement=placement)
    config = MindgateConfig.from_dict({"gateway": {"memory": False}}, env=False)
    gateway = serve_gateway(create_app(config, chat=router, embedder=minilm, warm_up=False))
    client = gateway.openai()
    raw = client.chat.completions.with_raw_response.create(model="sized", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    header = raw.headers["x-mindgate-route"]
    assert header.startswith("small; load (needs ") and "skipped big: smol-a@ctx8192 does not fit" in header
    feed.push(50 * MiB)  # the small model's memory now shows as used
    with client.chat.completions.with_streaming_response.create(model="sized", messages=HI, max_tokens=2,  # type: ignore[arg-type]
                                                                stream=True) as streamed:
        assert streamed.headers["x-mindgate-route"].startswith("small; loaded; skipped big:")
        assert any(line.startswith("data: ") for line in streamed.iter_lines())


def test_a_loopback_lm_studio_model_is_admitted_by_fit(lmstudio_fake: LMStudioFake, ggufs: dict[str, Path],
                                                        pool: LocalModelPool) -> None:
    """LM Studio through its contract fake (tests/fakes/lmstudio.py, JIT loading on): the 4.7 GB model is
    skipped while memory is short (nothing is sent to LM Studio), loaded when it fits, then counted as
    loaded (first as decided here, then as the next listing shows)."""
    catalog = ModelCatalog([Endpoint("studio", "lmstudio", url=lmstudio_fake.base_url)], pool=pool)
    catalog.list(refresh=True)
    feed = FakeResourceFeed(2 * GiB)
    placement = Placement(feed, pool=pool, decisions=DecisionLog())
    placement.attach(catalog)
    studio = create_chat_model("lmstudio", dict(model="qwen2.5-7b-instruct", max_tokens=2,
                                                          lmstudio_base_url=f"{lmstudio_fake.base_url}/v1"))
    router = Router([Target(studio, name="studio"), Target(model(ggufs["smol-b"], 256, pool), name="small")],
                    name="mixed", placement=placement)
    trace = routed(router)
    assert trace.served == "small"
    assert trace.skipped[0][0] == "studio" and "studio:qwen2.5-7b-instruct does not fit" in trace.skipped[0][1]
    assert not lmstudio_fake.requests_to("/v1/chat/completions") and lmstudio_fake.loaded == []
    feed.push(16 * GiB)
    trace = routed(router)
    assert trace.served == "studio" and trace.action.startswith("load (needs 4.")
    assert [i.id for i in lmstudio_fake.loaded] == ["qwen2.5-7b-instruct"]  # JIT-loaded by the request
    assert routed(router).action == "loaded"
    catalog.list(refresh=True)
    assert routed(router).action == "loaded"
    assert [d.action for d in placement.decisions.recent()] == ["load", "load", "skip"]
    # the auto chain's servers are found at first use (LazyChatModel): checked once found
    async def found() -> ChatModel:
        return studio

    lazy = LazyChatModel("lmstudio", lmstudio_fake.base_url, found)
    assert placement.server_footprint(lazy) is None
    asyncio.run(lazy.resolved())
    footprint = placement.server_footprint(lazy)
    assert footprint is not None and footprint.key == "studio:qwen2.5-7b-instruct" and footprint.gpu
