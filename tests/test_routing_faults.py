"""Fault tests of the router against real servers: llama.cpp servers that are SIGKILLed and restarted, a
server that hangs, a closed port, and loopback HTTP servers that answer 429/5xx/4xx on cue."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from fixtures_servers import LlamaServer
from mindgate.errors import ProviderError, RoutingError
from mindgate.routing import RetryPolicy, Router, StreamInterruptedError, Target
from routing_helpers import HangingServer, ScriptedServer, Step, chat_model, closed_port_url

ASK = [{"role": "user", "content": "Say one word."}]
FAST_RETRY = RetryPolicy(retries=1, backoff_base=0.05, backoff_max=0.2)
SMOLLM2_EOS = {"0": -100, "2": -100}  # <|endoftext|>, <|im_end|>: keeps a stream going until max_tokens


def row(router: Router, name: str) -> dict[str, Any]:
    return next(r for r in router.status() if r["name"] == name)


def test_sigkilled_server_fails_over_then_breaker_closes_after_restart(
        llama_server_factory: type[LlamaServer]) -> None:
    a = llama_server_factory(n_ctx=2048).start()
    b = llama_server_factory(n_ctx=2048).start()
    router = Router([Target(chat_model(a.base_url), name="a", timeout=30),
                     Target(chat_model(b.base_url), name="b", timeout=30)],
                    name="pair", retry=FAST_RETRY, breaker_failures=2, breaker_cooldown=4.0)

    async def run_with_kill() -> tuple[list[str | None], list[dict[str, Any]]]:
        answers, snapshots = [], []
        for i in range(12):
            request = asyncio.create_task(router.acomplete(ASK, max_tokens=8))
            if i == 4:  # SIGKILL while this request is in flight
                await asyncio.to_thread(a.kill)
            answers.append((await request).content)
            snapshots.append(row(router, "a"))
        return answers, snapshots

    answers, snapshots = asyncio.run(run_with_kill())
    assert len(answers) == 12 and all(isinstance(text, str) for text in answers)  # every request succeeded
    a_row, b_row = row(router, "a"), row(router, "b")
    assert a_row["successes"] in (4, 5)  # request 5 may have finished before the kill landed
    assert b_row["successes"] == 12 - a_row["successes"]
    assert a_row["errors"]["network"] >= 2
    opened = next(i for i, snap in enumerate(snapshots) if snap["state"] == "open")  # the breaker opened
    assert opened <= 5 and 0 < snapshots[opened]["retry_in"] <= 4.0
    assert snapshots[opened]["retry_at"] > time.time() - 10
    for before, after in zip(snapshots[opened:], snapshots[opened + 1:], strict=False):
        if before["state"] == after["state"] == "open" and after["retry_in"] < before["retry_in"]:
            assert after["requests"] == before["requests"]  # while open, a is skipped without a call

    async def more(n: int) -> None:
        for _ in range(n):
            await router.acomplete(ASK, max_tokens=8)

    llama_server_factory(a.port, n_ctx=2048).start()  # restart on the same port
    time.sleep(max(0.0, row(router, "a")["retry_in"] or 0.0) + 0.05)
    assert row(router, "a")["state"] == "half_open"
    successes_before = row(router, "a")["successes"]
    asyncio.run(more(3))  # the first is the half-open probe; it succeeds and closes the breaker
    a_row = row(router, "a")
    assert a_row["state"] == "closed" and a_row["failures"] == 0
    assert a_row["successes"] == successes_before + 3  # a is first in the chain again
    assert a_row["latency_ms"]["p50"] is not None and a_row["latency_ms"]["p99"] >= a_row["latency_ms"]["p50"]


def test_hanging_server_is_cut_off_at_the_timeout(llama_server: LlamaServer) -> None:
    hang = HangingServer()
    try:
        router = Router([Target(chat_model(hang.base_url), name="hang", timeout=0.5),
                         Target(chat_model(llama_server.base_url), name="llama")],
                        retry=RetryPolicy(retries=2, backoff_base=0.05))
        start = time.perf_counter()
        response = router.complete(ASK, max_tokens=8)
        elapsed = time.perf_counter() - start
        assert response.content is not None
        assert 0.5 <= elapsed < 5.0
        hang_row = row(router, "hang")
        assert hang_row["errors"] == {"timeout": 1} and hang_row["requests"] == 1  # a timeout is not retried

        alone = Router([Target(chat_model(hang.base_url), name="hang", timeout=0.4)], name="solo")
        start = time.perf_counter()
        with pytest.raises(RoutingError) as caught:
            alone.complete(ASK, max_tokens=8)
        assert 0.4 <= time.perf_counter() - start < 1.5
        assert "did not answer within 0.4s" in str(caught.value)
    finally:
        hang.close()


def test_stream_that_hangs_before_its_first_token_falls_back(llama_server: LlamaServer) -> None:
    hang = HangingServer()
    try:
        router = Router([Target(chat_model(hang.base_url), name="hang", first_token_timeout=0.4, timeout=30),
                         Target(chat_model(llama_server.base_url), name="llama")])
        start = time.perf_counter()
        chunks = list(router.stream(ASK, max_tokens=8))
        assert time.perf_counter() - start >= 0.4
        assert "".join(c.content or "" for c in chunks).strip()
        assert row(router, "hang")["errors"] == {"timeout": 1}
        assert row(router, "llama")["successes"] == 1
    finally:
        hang.close()


def test_stream_refused_before_first_token_falls_back(llama_server: LlamaServer) -> None:
    router = Router([Target(chat_model(closed_port_url()), name="down"),
                     Target(chat_model(llama_server.base_url), name="llama")], retry=FAST_RETRY)
    chunks = list(router.stream(ASK, max_tokens=8))
    assert "".join(c.content or "" for c in chunks).strip()
    assert row(router, "down")["errors"]["network"] == 2  # first try + one retry
    assert row(router, "down")["successes"] == 0


def test_stream_killed_midway_raises_instead_of_truncating(llama_server_factory: type[LlamaServer]) -> None:
    server = llama_server_factory(n_ctx=2048).start()
    backup = ScriptedServer().start()
    try:
        router = Router([Target(chat_model(server.base_url), name="dying"),
                         Target(chat_model(f"{backup.base_url}/v1"), name="backup")])

        async def consume() -> tuple[int, BaseException | None]:
            received = 0
            try:
                async for _chunk in router.astream([{"role": "user", "content": "Tell a long story."}],
                                                   max_tokens=600, logit_bias=SMOLLM2_EOS):
                    received += 1
                    if received == 3:
                        await asyncio.to_thread(server.kill)
            except StreamInterruptedError as exc:
                return received, exc
            return received, None

        received, error = asyncio.run(consume())
        assert isinstance(error, StreamInterruptedError), f"the stream ended quietly after {received} chunks"
        assert received >= 3 and error.chunks == received
        assert "incomplete" in str(error)
        assert backup.chat_requests == 0  # no silent switch to another target mid-answer
        assert row(router, "dying")["errors"] == {"stream_interrupted": 1}
    finally:
        backup.stop()


def test_retry_after_is_honoured() -> None:
    server = ScriptedServer(Step(429, {"Retry-After": "1"})).start()
    try:
        router = Router([Target(chat_model(f"{server.base_url}/v1"), name="limited")],
                        retry=RetryPolicy(retries=2, backoff_base=0.01, backoff_max=5.0))
        response = router.complete(ASK, max_tokens=8)
        assert response.content == "scripted ok"
        first, second = server.requests_to("/v1/chat/completions")
        assert second.at - first.at >= 0.95
        assert row(router, "limited")["errors"] == {"rate_limit": 1}
    finally:
        server.stop()


def test_long_retry_after_goes_to_the_next_target_instead_of_waiting() -> None:
    limited = ScriptedServer(Step(429, {"Retry-After": "30"})).start()
    spare = ScriptedServer(reply="from spare").start()
    try:
        router = Router([Target(chat_model(f"{limited.base_url}/v1"), name="limited"),
                         Target(chat_model(f"{spare.base_url}/v1"), name="spare")],
                        retry=RetryPolicy(retries=2, backoff_max=5.0))
        start = time.perf_counter()
        assert router.complete(ASK, max_tokens=8).content == "from spare"
        assert time.perf_counter() - start < 1.0
        assert limited.chat_requests == 1 and spare.chat_requests == 1
    finally:
        limited.stop()
        spare.stop()


def test_server_errors_are_retried_on_the_same_target() -> None:
    server = ScriptedServer(Step(500), Step(503)).start()
    try:
        router = Router([Target(chat_model(f"{server.base_url}/v1"), name="flaky")],
                        retry=RetryPolicy(retries=2, backoff_base=0.02), breaker_failures=5)
        assert router.complete(ASK, max_tokens=8).content == "scripted ok"
        assert server.chat_requests == 3
        flaky = row(router, "flaky")
        assert flaky["errors"] == {"server_error": 2} and flaky["state"] == "closed" and flaky["failures"] == 0
    finally:
        server.stop()


def test_client_errors_are_neither_retried_nor_rerouted() -> None:
    bad = ScriptedServer(Step(400, body={"error": {"message": "tools[0].function.name is required",
                                                   "type": "invalid_request_error"}})).start()
    spare = ScriptedServer().start()
    try:
        router = Router([Target(chat_model(f"{bad.base_url}/v1"), name="bad"),
                         Target(chat_model(f"{spare.base_url}/v1"), name="spare")], retry=FAST_RETRY)
        with pytest.raises(ProviderError) as caught:
            router.complete(ASK, max_tokens=8)
        assert caught.value.status_code == 400 and "function.name is required" in str(caught.value)
        assert bad.chat_requests == 1 and spare.chat_requests == 0
        assert row(router, "bad")["state"] == "closed" and row(router, "bad")["failures"] == 0
    finally:
        bad.stop()
        spare.stop()


def test_missing_model_falls_back_without_retry() -> None:
    missing = ScriptedServer(Step(404, body={"error": {"message": "model 'x' not found"}})).start()
    spare = ScriptedServer(reply="spare").start()
    try:
        router = Router([Target(chat_model(f"{missing.base_url}/v1", "x"), name="missing"),
                         Target(chat_model(f"{spare.base_url}/v1"), name="spare")], retry=FAST_RETRY)
        assert router.complete(ASK, max_tokens=8).content == "spare"
        assert missing.chat_requests == 1
        assert row(router, "missing")["errors"] == {"model_not_found": 1}
    finally:
        missing.stop()
        spare.stop()


def test_every_target_open_fails_fast_with_states_and_retry_time() -> None:
    router = Router([Target(chat_model(closed_port_url()), name="lan"),
                     Target(chat_model(closed_port_url()), name="cloud")],
                    name="main", retry=RetryPolicy(retries=0), breaker_failures=1, breaker_cooldown=30.0)
    with pytest.raises(RoutingError) as first:
        router.complete(ASK, max_tokens=8)
    text = str(first.value)
    assert text.startswith("no target of chain 'main' could answer")
    assert "lan: failed with NetworkError" in text and "cloud: failed with NetworkError" in text

    requests_before = [r["requests"] for r in router.status()]
    start = time.perf_counter()
    with pytest.raises(RoutingError) as second:
        router.complete(ASK, max_tokens=8)
    assert time.perf_counter() - start < 0.05
    assert [r["requests"] for r in router.status()] == requests_before  # no connection attempted
    text = str(second.value)
    assert text.startswith("every target of chain 'main' is unavailable (circuit open)")
    assert re.search(r"lan: open after 1 failure\(s\), retried in (29\.\d|30\.0)s", text)
    assert "cloud: open after 1 failure(s)" in text and "is not reachable" in text
    assert second.value.retry_after is not None and 29.0 < second.value.retry_after <= 30.0
    assert second.value.to_openai()["error"]["code"] == "no_target_available"
    assert {r["state"] for r in router.status()} == {"open"}
