"""Only mindgate errors escape providers: a property test over what an upstream can answer.

Hypothesis draws an HTTP status, headers (``Retry-After`` / ``retry-after-ms`` in any form, content types)
and a body (JSON of any shape, error-shaped JSON with fields of the wrong type, text, bytes, SSE streams
with multi-line fields, NDJSON lines); the providers' HTTP clients answer chat, streamed chat and embedding
calls from it. Whatever comes back, the call returns or raises a :class:`~mindgate.errors.MindgateError`.

The upstream here is a canned HTTP server on loopback (tests/fakes/canned.py, "any server at all"), whose
answer each example sets: the property is about parsing what comes over a real socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes.canned import CannedServer, canned_server
from mindgate.errors import MindgateError
from mindgate.providers import azure, gemini, ollama
from mindgate.providers._base import ChatModel, Embedder
from mindgate.providers._google import GoogleClient
from mindgate.providers._http_errors import retry_after_seconds
from mindgate.providers.openai_compat import (
    GENERIC,
    OpenAICompatChatModel,
    OpenAICompatClient,
    OpenAICompatEmbedder,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)
any_field = json_values | st.sampled_from(["", "x", "37s", "nan", "inf", "-1", "1e400", "[DONE]"])

# Bodies shaped like the answers the parsers look into, with every field free to be anything.
openai_like = st.fixed_dictionaries({}, optional={
    "choices": st.lists(st.fixed_dictionaries({}, optional={
        "message": st.fixed_dictionaries({}, optional={"content": any_field, "tool_calls": any_field}) | any_field,
        "delta": st.fixed_dictionaries({}, optional={"content": any_field, "tool_calls": any_field}) | any_field,
        "finish_reason": any_field}) | any_field, max_size=2) | any_field,
    "usage": st.fixed_dictionaries({}, optional={"prompt_tokens": any_field, "completion_tokens": any_field})
    | any_field,
    "data": st.lists(st.fixed_dictionaries({}, optional={"embedding": any_field, "index": any_field}) | any_field,
                     max_size=3) | any_field,
    "model": any_field, "error": any_field, "embeddings": any_field,
    "message": st.fixed_dictionaries({}, optional={"content": any_field, "tool_calls": any_field,
                                                   "thinking": any_field}) | any_field,
    "done": any_field, "prompt_eval_count": any_field, "eval_count": any_field, "done_reason": any_field})
google_error = st.fixed_dictionaries({"error": st.fixed_dictionaries(
    {"message": st.text(max_size=20)},
    optional={"status": any_field, "code": any_field, "details": st.lists(st.fixed_dictionaries(
        {"@type": st.sampled_from(["type.googleapis.com/google.rpc.ErrorInfo",
                                   "type.googleapis.com/google.rpc.RetryInfo", "x"])},
        optional={"reason": any_field, "retryDelay": any_field})) | any_field})})
json_body = (openai_like | google_error | json_values).map(lambda v: json.dumps(v).encode())


@st.composite
def sse_body(draw: st.DrawFn) -> bytes:
    """Server-sent events: data fields split over lines, comments, CRLF, [DONE] or not, garbage."""
    events = []
    for payload in draw(st.lists(json_body.map(bytes.decode) | st.text(max_size=30), max_size=3)):
        lines = payload.split("\n") if draw(st.booleans()) else [payload[:5], payload[5:]]
        events.append("".join(f"data: {line}\n" for line in lines))
    if draw(st.booleans()):
        events.append(": keep-alive\n")
    if draw(st.booleans()):
        events.append("data: [DONE]\n")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return "\n".join(events).replace("\n", newline).encode()


ndjson_body = st.lists(json_body, max_size=3).map(lambda lines: b"\n".join(lines))
bodies = json_body | sse_body() | ndjson_body | st.binary(max_size=60) | st.text(max_size=60).map(str.encode)
header_values = st.sampled_from(["5", "0", "-3", "1.5", "soon", "nan", "inf", "1e400", "",
                                 "Wed, 21 Oct 2015 07:28:00 GMT", "Mon, 99 Foo 2015 99:99:99 GMT"]) \
    | st.text(max_size=12)


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, dict[str, str], bytes]:
    status = draw(st.sampled_from([200, 200, 200, 400, 401, 403, 404, 408, 429, 500, 502, 503]))
    headers: dict[str, str] = {}
    for name in ("retry-after", "retry-after-ms"):
        if draw(st.booleans()):
            headers[name] = draw(header_values).encode("ascii", "ignore").decode().replace("\r", "").replace("\n", "")
    headers["content-type"] = draw(st.sampled_from(["application/json", "text/event-stream",
                                                    "application/x-ndjson", "text/plain"]))
    return status, headers, draw(bodies)


@pytest.fixture(scope="module")
def server() -> Iterator[CannedServer]:
    with canned_server() as running:
        yield running


def _models(base: str) -> list[ChatModel | Embedder]:
    generic = OpenAICompatClient(f"{base}/v1", profile=GENERIC)
    google = GoogleClient(f"{base}/v1", profile=gemini.PROFILE, key_hint="set GOOGLE_API_KEY")
    azure_client = OpenAICompatClient(f"{base}/v1", profile=azure.PROFILE)
    native = ollama.OllamaClient(base, profile=ollama.PROFILE)
    return [OpenAICompatChatModel(generic, "m"), OpenAICompatEmbedder(generic, "e"),
            OpenAICompatChatModel(google, "m"), OpenAICompatEmbedder(google, "e"),
            OpenAICompatChatModel(azure_client, "m"),
            ollama.OllamaChatModel(native, "m"), ollama.OllamaEmbedder(native, "e")]


async def _exercise(model: ChatModel | Embedder) -> None:
    try:
        if isinstance(model, Embedder):
            await model.aembed_batch(["a", "b"])
        else:
            await model.acomplete([{"role": "user", "content": "hi"}])
            async for _ in model.astream([{"role": "user", "content": "hi"}]):
                pass
    except MindgateError:
        pass


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(answer=answers())
def test_only_mindgate_errors_escape_providers(server: CannedServer,
                                               answer: tuple[int, dict[str, str], bytes]) -> None:
    server.answer = answer

    async def run() -> None:
        models = _models(server.base_url)
        try:
            for model in models:
                await _exercise(model)  # anything but a MindgateError fails the test with its traceback
        finally:
            for model in models:
                await model.aclose()

    asyncio.run(run())


@given(value=header_values, ms=st.none() | header_values)
def test_retry_after_is_finite_and_never_raises(value: str, ms: str | None) -> None:
    headers = {"retry-after": value, **({"retry-after-ms": ms} if ms is not None else {})}
    seconds = retry_after_seconds(headers)
    assert seconds is None or 0.0 <= seconds <= 86_400.0


@pytest.mark.parametrize("value", ["soon", "Mon, 99 Foo 2015 99:99:99 GMT", "in a minute"])
def test_a_429_with_a_retry_after_that_is_neither_seconds_nor_a_date_is_a_rate_limit(server: CannedServer,
                                                                                     value: str) -> None:
    """Before: ``ValueError: Invalid date value or format`` escaped (a 500 on /v1/memories)."""
    from mindgate.errors import RateLimitError

    server.answer = (429, {"retry-after": value}, json.dumps({"error": {"message": "slow down"}}).encode())
    for client in (OpenAICompatClient(f"{server.base_url}/v1", profile=GENERIC),
                   GoogleClient(f"{server.base_url}/v1", profile=gemini.PROFILE, key_hint="k")):
        with pytest.raises(RateLimitError) as info:
            OpenAICompatChatModel(client, "m").complete([{"role": "user", "content": "hi"}])
        assert info.value.retry_after is None
