"""Latency the router adds per request, against calling the same target directly, in the same run.

Upstreams are minimal so model time does not swamp the figure: an in-process model that answers at once,
and a loopback HTTP server (raw asyncio, keep-alive) answering a fixed OpenAI completion through the real
``OpenAICompatChatModel``. Direct and routed calls alternate in small blocks so drift hits both alike.
Target: p50 overhead < 0.5 ms.

Usage: python bench/router.py [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from _loopback import http_response, pct, start_upstream
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message
from mindgate.providers.openai_compat import OpenAICompatChatModel, OpenAICompatClient
from mindgate.routing import Router, Target

TARGET_P50_MS = 0.5
BODY = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "bench",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
RESPONSE = http_response(BODY)


class InstantModel(ChatModel):
    """Answers at once: whatever time a call takes is the caller's."""

    provider = "instant"
    _response = ChatResponse(content="ok", model="instant")

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        return self._response

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        for piece in ("o", "k", "!", "", "", "", "", ""):
            yield ChatChunk(content=piece)


class DownModel(InstantModel):
    provider = "down"

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        from mindgate.errors import NetworkError

        raise NetworkError("down", url="bench")


async def measure(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await call()
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


async def compare(direct: Callable[[], Awaitable[Any]], routed: Callable[[], Awaitable[Any]], n: int,
                  block: int = 200) -> dict[str, float]:
    await measure(direct, 200)
    await measure(routed, 200)  # warm-up
    d: list[float] = []
    r: list[float] = []
    for _ in range(max(1, n // block)):
        d += await measure(direct, block)
        r += await measure(routed, block)
    return {"direct_p50_ms": pct(d, 0.5), "direct_p99_ms": pct(d, 0.99), "router_p50_ms": pct(r, 0.5),
            "router_p99_ms": pct(r, 0.99), "overhead_p50_ms": pct(r, 0.5) - pct(d, 0.5),
            "overhead_p99_ms": pct(r, 0.99) - pct(d, 0.99), "requests": len(r)}


async def drain(stream: AsyncIterator[ChatChunk]) -> None:
    async for _ in stream:
        pass


async def run(n: int) -> dict[str, dict[str, float]]:
    short = [{"role": "user", "content": "hello"}]
    long = [{"role": "system", "content": "You are helpful."}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "a fairly ordinary sentence of chat " * 8}
        for i in range(40)]
    instant = InstantModel("instant")
    port = start_upstream(lambda head, body: RESPONSE)
    http = OpenAICompatChatModel(OpenAICompatClient(f"http://127.0.0.1:{port}/v1"), "bench")

    one = Router([instant], name="one")
    guarded = Router([Target(instant, name="guarded", timeout=30, context_length=32768)], name="guarded")
    skip = Router([Target(DownModel("a"), name="down-a"), Target(DownModel("b"), name="down-b"),
                   Target(instant, name="up")], name="skip", breaker_failures=1, breaker_cooldown=3600)
    await skip.acomplete(short)  # opens the first two: later requests skip them
    via_http = Router([Target(http, name="http", timeout=30)], name="http")

    return {
        "in-process, 1 target": await compare(lambda: instant.acomplete(short), lambda: one.acomplete(short), n),
        "in-process, timeout + context check, 41 msgs": await compare(
            lambda: instant.acomplete(long, max_tokens=256), lambda: guarded.acomplete(long, max_tokens=256), n),
        "in-process, 2 open targets skipped": await compare(
            lambda: instant.acomplete(short), lambda: skip.acomplete(short), n),
        "in-process stream, 8 chunks": await compare(
            lambda: drain(instant.astream(short)), lambda: drain(one.astream(short)), n),
        "loopback HTTP (httpx), 1 target": await compare(
            lambda: http.acomplete(short), lambda: via_http.acomplete(short), n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000, help="requests per side per scenario")
    args = parser.parse_args()
    results = asyncio.run(run(args.requests))
    print(f"router overhead vs direct calls, {args.requests} requests per side (target p50 < {TARGET_P50_MS} ms)\n")
    print(f"{'scenario (microseconds)':46} {'direct p50':>11} {'router p50':>11} {'added p50':>10} {'added p99':>10}  "
          "p50 < 0.5 ms")
    for name, r in results.items():
        ok = "yes" if r["overhead_p50_ms"] < TARGET_P50_MS else "NO"
        print(f"{name:46} {r['direct_p50_ms'] * 1000:>11.1f} {r['router_p50_ms'] * 1000:>11.1f} "
              f"{r['overhead_p50_ms'] * 1000:>10.1f} {r['overhead_p99_ms'] * 1000:>10.1f}  {ok}")
    print(json.dumps({"bench": "router", "target_p50_overhead_ms": TARGET_P50_MS, "results": results}))


if __name__ == "__main__":
    main()
