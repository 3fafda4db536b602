"""Server-sent events are parsed by httpx-sse: a ``data:`` field may span several lines (the SSE spec joins
them with a newline), comments and CRLF line ends are allowed, and the payload forwarded to gateway clients
is one line again. The upstream is an ``httpx.MockTransport`` answering with the exact bytes under test."""

from __future__ import annotations

import json

import httpx
import pytest

from mindgate.errors import NetworkError, ProviderError
from mindgate.providers.openai_compat import GENERIC, OpenAICompatChatModel, OpenAICompatClient

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
         "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}


def _model(body: bytes, content_type: str = "text/event-stream") -> OpenAICompatChatModel:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers={"content-type": content_type},
                                                                   content=body))
    return OpenAICompatChatModel(OpenAICompatClient("http://upstream.test/v1", profile=GENERIC,
                                                    transport=transport), "m")


def _chunks(model: OpenAICompatChatModel) -> list[str | None]:
    return [chunk.content for chunk in model.stream([{"role": "user", "content": "hi"}])]


def test_a_data_field_over_several_lines_is_one_event() -> None:
    pretty = json.dumps(CHUNK, indent=2)  # a JSON payload split over many `data:` lines
    body = "".join(f"data: {line}\n" for line in pretty.splitlines()) + "\ndata: [DONE]\n\n"
    model = _model(body.encode())
    chunks = list(model.stream([{"role": "user", "content": "hi"}]))
    assert [c.content for c in chunks] == ["Hello"]
    assert chunks[0].wire is not None and b"\n" not in chunks[0].wire and json.loads(chunks[0].wire) == CHUNK


def test_comments_crlf_and_event_names_are_understood() -> None:
    body = (": keep-alive\r\n\r\nevent: message\r\ndata: " + json.dumps(CHUNK) + "\r\n\r\ndata: [DONE]\r\n\r\n")
    assert _chunks(_model(body.encode())) == ["Hello"]


def test_a_stream_cut_before_done_is_a_network_error() -> None:
    with pytest.raises(NetworkError, match="before \\[DONE\\]"):
        _chunks(_model(("data: " + json.dumps(CHUNK) + "\n\n").encode()))


def test_an_answer_that_is_not_an_event_stream_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="did not answer with an event stream"):
        _chunks(_model(json.dumps({"choices": []}).encode(), content_type="application/json"))
