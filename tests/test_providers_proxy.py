"""mem0's ``http_client_proxies`` is honoured: every request of a provider goes through the proxy it names
(one URL, or a mapping per scheme); and mem0's LLM ``top_k`` reaches the server. The proxy is a real HTTP
forward proxy on loopback (a few lines of asyncio: it records the request and answers as the upstream
would), so no outside host is needed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest

from mindgate import MindgateConfig
from mindgate.providers import create_chat_model, create_embedder


class ForwardProxy:
    """Answers every proxied request with an OpenAI-shaped body; ``seen`` holds the request lines, ``bodies``
    the JSON bodies."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.bodies: list[dict[str, object]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                       if line.lower().startswith("content-length:")), 0)
        self.bodies.append(json.loads(await reader.readexactly(length)) if length else {})
        line = head.split("\r\n", 1)[0]
        self.seen.append(line)
        if line.startswith("GET ") and line.split()[1].endswith("/api/v1/models"):
            # LM Studio's REST v1 listing (documented shape): model "m" is loaded, so nothing is loaded first
            body = {"models": [{"type": "llm", "key": "m", "loaded_instances": [
                {"id": "m", "config": {"context_length": 4096}}], "max_context_length": 4096}]}
        elif "/embeddings" in line:
            body = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
                    "model": "e"}
        else:
            body = {"id": "c", "object": "chat.completion", "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "via proxy"}, "finish_reason": "stop"}]}
        data = json.dumps(body).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(data)).encode() + b"\r\nConnection: close\r\n\r\n" + data)
        await writer.drain()
        writer.close()

    def __enter__(self) -> ForwardProxy:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


def test_a_proxy_url_carries_every_request(proxy: ForwardProxy) -> None:
    cfg = MindgateConfig.from_dict({
        "llm": {"provider": "lmstudio", "config": {"model": "m", "lmstudio_base_url": "http://lmstudio.test:1234/v1",
                                                   "http_client_proxies": proxy.url, "top_k": 5}},
        "embedder": {"provider": "openai", "config": {"model": "e", "api_key": "sk-test",
                                                      "openai_base_url": "http://openai.test/v1",
                                                      "http_client_proxies": {"http": proxy.url}}}}, env=False)
    answer = create_chat_model(cfg.llm.provider, cfg.llm.config).complete([{"role": "user", "content": "hi"}])
    assert answer.content == "via proxy"
    vector = create_embedder(cfg.embedder.provider, cfg.embedder.config).embed("hi")
    assert vector.tolist() == pytest.approx([0.6, 0.8])
    # LM Studio's model listing (mindgate makes sure the model is loaded first) goes through the proxy too
    assert proxy.seen == ["GET http://lmstudio.test:1234/api/v1/models HTTP/1.1",
                          "POST http://lmstudio.test:1234/v1/chat/completions HTTP/1.1",
                          "POST http://openai.test/v1/embeddings HTTP/1.1"]
    assert proxy.bodies[1]["top_k"] == 5  # mem0's LLM top_k reaches LM Studio
