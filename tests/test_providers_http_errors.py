"""One HTTP error mapping for inference and model management: the same upstream answer (401, a missing model,
429 with Retry-After, 503) gives the same error class, the same retry facts and comparable wording whether it
answered a chat request (``OpenAICompatClient``) or a management request (``models._http.request_json``).

The upstream is a real loopback HTTP server answering every path with the scripted status and an
OpenAI-shaped error body (not a fake of any vendor)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes._server import FakeServer
from mindgate.errors import AuthenticationError, MindgateError, ModelNotFoundError, ProviderError, RateLimitError
from mindgate.providers import create_chat_model
from mindgate.providers.management._http import client_for, request_json
from mindgate.providers.management._records import Endpoint


class Refusing(FakeServer):
    """Answers every request with ``status``, ``headers`` and ``{"error": {"message": ...}}``."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 500
        self.headers: dict[str, str] = {}

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "POST"])])

    async def _answer(self, request: Request) -> Response:
        message = f"scripted refusal {self.status}"
        return JSONResponse({"error": {"message": message, "type": "server_error", "param": None, "code": None}},
                            status_code=self.status, headers=self.headers)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Refusing]:
    server = Refusing()
    server.start()
    yield server
    server.stop()


async def _inference(server: Refusing) -> MindgateError:
    model = create_chat_model("openai_compatible", {"base_url": f"{server.base_url}/v1", "model": "qwen-x",
                                                    "api_key": "k"})
    try:
        await model.acomplete([{"role": "user", "content": "hi"}], max_tokens=4)
    except MindgateError as exc:
        return exc
    finally:
        await model.aclose()
    raise AssertionError("the upstream refused, the call did not")


async def _management(server: Refusing) -> MindgateError:
    endpoint = Endpoint("gpu", "openai_compatible", f"{server.base_url}/v1", api_key="k")
    async with client_for(endpoint) as client:
        try:
            await request_json(client, endpoint, "GET", f"{endpoint.url}/models/qwen-x", model="qwen-x")
        except MindgateError as exc:
            return exc
    raise AssertionError("the upstream refused, the call did not")


@pytest.mark.parametrize(("status", "headers", "cls"), [
    (401, {}, AuthenticationError),
    (404, {}, ModelNotFoundError),
    (429, {"Retry-After": "7"}, RateLimitError),
    (503, {}, ProviderError),
])
def test_management_and_inference_map_an_answer_alike(upstream: Refusing, status: int, headers: dict[str, str],
                                                      cls: type[ProviderError]) -> None:
    upstream.status, upstream.headers = status, headers
    errors: list[Any] = [asyncio.run(_inference(upstream)), asyncio.run(_management(upstream))]
    for error in errors:
        assert type(error) is cls, (status, type(error), error)
        assert error.status_code == status and error.provider == "openai_compatible"
        assert f"HTTP {status}" in error.message and f"scripted refusal {status}" in error.message
        assert upstream.base_url in error.message  # which server said it
        assert error.hint  # and what to do
    inference, management = errors
    assert inference.retryable == management.retryable
    assert inference.retryable is (status in (429, 503))
    if cls is RateLimitError:
        assert inference.retry_after == management.retry_after == 7
    if cls is AuthenticationError:
        assert inference.hint == management.hint and "api_key" in inference.hint
    if cls is ModelNotFoundError:
        assert "'qwen-x'" in inference.message and "'qwen-x'" in management.message
    # the same sentence apart from where the request went
    assert inference.message.split(" at ")[0] == management.message.split(" at ")[0]
