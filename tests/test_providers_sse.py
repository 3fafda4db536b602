"""Server-sent events are parsed as the SSE standard says: a ``data:`` field may span several lines (joined
with a newline), comments and CR / CRLF line ends are allowed, line ends may fall anywhere between reads, and
the payload forwarded to gateway clients is one line again. The upstream is a canned HTTP server on loopback
(tests/fakes/canned.py) answering with the exact bytes under test."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from fakes.canned import CannedServer, canned_server
from mindgate.errors import NetworkError, ProviderError
from mindgate.providers.openai_compat import GENERIC, OpenAICompatChatModel, OpenAICompatClient

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
         "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}


@pytest.fixture(scope="module")
def server() -> Iterator[CannedServer]:
    with canned_server() as running:
        yield running


def _model(server: CannedServer, body: bytes, content_type: str = "text/event-stream",
           chunks: int = 1) -> OpenAICompatChatModel:
    server.answer = (200, {"content-type": content_type}, body)
    server.chunks = chunks
    return OpenAICompatChatModel(OpenAICompatClient(f"{server.base_url}/v1", profile=GENERIC), "m")


def _chunks(model: OpenAICompatChatModel) -> list[str | None]:
    return [chunk.content for chunk in model.stream([{"role": "user", "content": "hi"}])]


def test_a_data_field_over_several_lines_is_one_event(server: CannedServer) -> None:
    pretty = json.dumps(CHUNK, indent=2)  # a JSON payload split over many `data:` lines
    body = "".join(f"data: {line}\n" for line in pretty.splitlines()) + "\ndata: [DONE]\n\n"
    model = _model(server, body.encode())
    chunks = list(model.stream([{"role": "user", "content": "hi"}]))
    assert [c.content for c in chunks] == ["Hello"]
    assert chunks[0].wire is not None and b"\n" not in chunks[0].wire and json.loads(chunks[0].wire) == CHUNK


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_comments_line_ends_and_event_names_are_understood(server: CannedServer, newline: str) -> None:
    body = (": keep-alive\n\nevent: message\ndata: " + json.dumps(CHUNK) + "\n\ndata: [DONE]\n\n")
    # 23 writes: line ends (a CRLF too) fall across the client's reads
    assert _chunks(_model(server, body.replace("\n", newline).encode(), chunks=23)) == ["Hello"]


def test_a_stream_cut_before_done_is_a_network_error(server: CannedServer) -> None:
    with pytest.raises(NetworkError, match="before \\[DONE\\]"):
        _chunks(_model(server, ("data: " + json.dumps(CHUNK) + "\n\n").encode()))


def test_an_answer_that_is_not_an_event_stream_is_a_provider_error(server: CannedServer) -> None:
    with pytest.raises(ProviderError, match="did not answer with an event stream"):
        _chunks(_model(server, json.dumps({"choices": []}).encode(), content_type="application/json"))
