"""Upstream faults through the gateway: a misbehaving first target (refused, reset, hang, trickle, garbage,
wrong shape, HTML, 429, 500, cut/stalled/garbled mid-stream; :mod:`bench/faults.py`'s ``FaultServer``)
in front of the real llama.cpp server. The client always gets a success via fallback or an OpenAI-shaped
error that names the target and what went wrong, within the configured timeouts; a stream broken after
its first chunk ends with an error event and ``[DONE]``, never a silent truncation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fixtures_gateway import GatewayServer
from metrics_helpers import sample
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder
from test_reliability_crash import load_bench

faults = load_bench("faults")

TIMEOUT = 0.5  # the faulty target's router timeout; its chain retries once
LIMIT = 2 * TIMEOUT + 8.0  # two attempts, backoff and a short answer from the healthy target: no hang past this
MIDSTREAM = {"cut_midway", "stall_midway", "garbage_midway"}

# what the error message must say, per fault: (non-stream, stream)
SAYS = {
    "refused": ("not reachable", "not reachable"),
    "reset": ("dropped the connection", "dropped the connection"),
    "hang": (f"did not answer within {TIMEOUT}s", f"did not send its first token within {TIMEOUT}s"),
    "hang_provider_timeout": ("did not answer within", "did not answer within"),
    "trickle": (f"did not answer within {TIMEOUT}s", f"did not send its first token within {TIMEOUT}s"),
    "garbage_json": ("invalid JSON", "malformed stream event"),
    "wrong_shape": ("malformed completion", "malformed stream event"),
    "html": ("invalid JSON", "did not answer with an event stream"),
    "http_429": ("rate limiting", "rate limiting"),
    "http_500": ("HTTP 500: the model crashed", "HTTP 500: the model crashed"),
    "cut_midway": ("dropped the connection", "broke after 2 chunk(s)"),
    "stall_midway": (f"did not answer within {TIMEOUT}s", "did not send the next chunk"),
    "garbage_midway": ("invalid JSON", "malformed stream event"),
}


@pytest.fixture(scope="module")
def fault_server() -> Iterator[Any]:
    server = faults.FaultServer().start()
    yield server
    server.stop()


def serve_faults(fault_server: Any, llama_server: Any, minilm: Embedder, workdir: Path,
                 only: list[str] | None = None) -> GatewayServer:
    """The gateway with the fault chains of bench/faults.py, the llama.cpp server as the healthy target."""
    healthy = {"provider": "openai_compatible", "config": {"base_url": llama_server.base_url, "model": "smollm2"}}
    config = MindgateConfig.from_dict(faults.fault_config(fault_server, healthy, timeout=TIMEOUT, faults=only))
    store = SQLiteStore(workdir / "memory.db")
    app = create_app(config, memory=AsyncMemory(embedder=minilm, store=store), embedder=minilm, warm_up=False)
    server = GatewayServer(app).start()
    with server.http() as http:
        assert faults.request(http, "healthy", stream=False).kind == "success"
    return server


@pytest.fixture(scope="module")
def gateway(fault_server: Any, llama_server: Any, minilm: Embedder,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = serve_faults(fault_server, llama_server, minilm, tmp_path_factory.mktemp("faults"))
    yield server
    server.stop()


def test_every_fault_case_has_an_expectation() -> None:
    assert set(SAYS) == set(faults.FAULTS)


@pytest.mark.parametrize("fault", list(faults.FAULTS))
def test_fault_is_survived_by_fallback_or_reported_clearly(gateway: GatewayServer, fault_server: Any,
                                                          fault: str) -> None:
    rows = {r.chain.split(".", 1)[1]: r for r in faults.run_faults(gateway.base_url, fault_server, repeat=1,
                                                                   faults=[fault], warm_up=False)}
    for chain, row in rows.items():
        assert row.first.seconds < LIMIT, f"{chain} took {row.first.seconds:.1f}s"
    if fault != "refused":
        assert all(r.requests_to_fault >= 1 for r in rows.values()), "the faulty upstream was never called"
    said = SAYS[fault]

    # non-streaming: served by the healthy target; alone, an OpenAI-shaped 503 naming the target and the fault
    assert rows["complete"].first.kind == "success" and rows["complete"].fallback_used
    assert rows["complete"].first.served_by == "smollm2"
    alone = rows["complete.alone"].first
    assert (alone.status, alone.code) == (503, "no_target_available")
    assert f"bad_{fault}" in alone.message and said[0] in alone.message, alone.message

    stream, stream_alone = rows["stream"].first, rows["stream.alone"].first
    if fault in MIDSTREAM:
        # the answer had begun: no fallback is possible, and the cut is reported in the stream itself
        for outcome in (stream, stream_alone):
            assert (outcome.status, outcome.kind, outcome.code) == (200, "error_event", "stream_interrupted")
            assert outcome.chunks == 2 and outcome.done and said[1] in outcome.message, outcome.message
    else:
        assert stream.kind == "success" and stream.done and stream.served_by == "smollm2" and stream.chunks > 0
        assert (stream_alone.status, stream_alone.code) == (503, "no_target_available")
        assert f"bad_{fault}" in stream_alone.message and said[1] in stream_alone.message, stream_alone.message


def _metric(server: GatewayServer, name: str, **labels: str) -> float | None:
    return sample(httpx.get(f"{server.base_url}/metrics").text, name, **labels)


def test_the_breaker_opens_and_later_requests_skip_the_faulty_target(fault_server: Any, llama_server: Any,
                                                                      minilm: Embedder, tmp_path: Path) -> None:
    gateway = serve_faults(fault_server, llama_server, minilm, tmp_path, only=["http_500"])
    chain = "http_500.complete"
    calls = []
    with httpx.Client(base_url=gateway.base_url, timeout=60) as http:
        for _ in range(4):
            before = len(fault_server.requests)
            outcome = faults.request(http, chain, stream=False)
            assert outcome.kind == "success" and outcome.served_by == "smollm2"
            calls.append(len(fault_server.requests) - before)
    # 1 retry, then the breaker opens after its 3rd failure: 2 + 1 calls, then none
    assert calls == [2, 1, 0, 0]
    assert _metric(gateway, "mindgate_breaker_state", chain=chain, target="bad_http_500") == 2  # open
    assert _metric(gateway, "mindgate_fallbacks_total", chain=chain) == 4
    assert _metric(gateway, "mindgate_target_errors_total", chain=chain, target="bad_http_500",
                   kind="server_error") == 3
    gateway.stop()


def test_the_openai_sdk_raises_on_a_stream_cut_midway(gateway: GatewayServer) -> None:
    client = gateway.openai()
    stream = client.chat.completions.create(model="cut_midway.stream.alone", stream=True, max_tokens=4,
                                            messages=[{"role": "user", "content": "Say hello."}])
    received = []
    with pytest.raises(openai.APIError, match="broke after 2 chunk"):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hel", "lo"]


def test_fault_server_paths_are_as_documented(fault_server: Any) -> None:
    assert fault_server.url("hang").endswith("/hang/v1")
    with pytest.raises(httpx.ConnectError):
        httpx.get(fault_server.url("refused") + "/models", timeout=2)
    assert httpx.get(fault_server.url("http_500") + "/models", timeout=2).json()["data"][0]["id"] == "faulty-model"
