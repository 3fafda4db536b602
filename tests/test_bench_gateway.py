"""bench/gateway.py's instruments: the canned upstream's model-like service time and the light load client
(Content-Length and chunked answers), on real loopback sockets. No timing is asserted except the upstream's
lower bound: an answer that waits N ms cannot arrive sooner."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gateway", ROOT / "bench" / "gateway.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def _serve(factory: object, check: object) -> object:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    try:
        return await check(f"http://127.0.0.1:{port}/v1")  # type: ignore[operator]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True])
def test_the_upstream_serves_a_bench_model_after_its_service_time_and_the_raw_client_reads_every_answer(
        bench: ModuleType, api: str, stream: bool) -> None:
    async def check(base: str) -> tuple[object, object]:
        instant = await bench.raw_load(base, clients=4, requests=20, stream=stream, api=api)
        slow = await bench.raw_load(base, clients=4, requests=8, stream=stream, api=api, service_ms=30)
        return instant, slow

    instant, slow = asyncio.run(_serve(bench.Upstream, check))
    assert (instant.requests, instant.errors) == (20, 0)
    assert (slow.requests, slow.errors) == (8, 0)
    assert slow.p50_ms >= 30.0  # the stream's last event, or the JSON answer, leaves after the service time
    assert bench.service_model(30) == "bench-30ms" and bench.service_model(0) == "bench"


def test_the_upstream_lists_the_bench_models_it_was_started_with(bench: ModuleType) -> None:
    models = bench._canned([50.0, 300.0])[2]
    assert b'"bench"' in models and b'"bench-50ms"' in models and b'"bench-300ms"' in models


class _Chunked(asyncio.Protocol):
    """Answers every request with a chunked body of three chunks (as uvicorn streams), status from the path."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            status = b"503 Service Unavailable" if b"/responses" in head else b"200 OK"
            chunks = [(b"data: one\n\n0\r\n\r\n", b""), (b"data: two\n\n...", b";ext=1")]  # a false terminator
            body = b"".join(b"%x%s\r\n%s\r\n" % (len(data), ext, data) for data, ext in chunks) + b"0\r\n\r\n"
            self.transport.write(b"HTTP/1.1 " + status + b"\r\ntransfer-encoding: chunked\r\n\r\n" + body)


def test_the_raw_client_reads_chunked_answers_to_the_end_and_counts_failures(bench: ModuleType) -> None:
    async def check(base: str) -> tuple[object, object]:
        ok = await bench.raw_load(base, clients=2, requests=10, stream=True, api="chat")
        failed = await bench.raw_load(base, clients=2, requests=10, stream=True, api="responses")
        return ok, failed

    ok, failed = asyncio.run(_serve(_Chunked, check))
    assert (ok.requests, ok.errors) == (10, 0)  # a body misread would desynchronise the next exchange
    assert (failed.requests, failed.errors) == (10, 10)
