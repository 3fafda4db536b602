"""A server's own Responses API (``POST /v1/responses``), for the gateway's pass-through.

:class:`NativeResponses` sends a Responses request to one server (OpenAI, vLLM, LM Studio >= 0.3.29, Ollama >=
0.13.3: whatever its provider config marks with ``responses_api: native | auto``) over the shared pooled
client, and hands back the ``response`` object, or the server's semantic events one by one. Failures are
mapped as for chat (:meth:`~.openai_compat.OpenAICompatClient.raise_for_status`: OpenAI's error shape,
Retry-After, a missing model with the server's list). A server without the route (HTTP 404 that names no
model, 405, 501, or LM Studio's HTTP 200 "Unexpected endpoint" body) is, under ``auto``, remembered and
reported as :class:`~mindgate.errors.NativeResponsesUnavailable` so the request is bridged; under
``native`` it is an error saying what to configure.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from mindgate.config import ResponsesAPI
from mindgate.errors import MindgateError, NativeResponsesUnavailable, NetworkError, ProviderError
from mindgate.providers._http_errors import json_or_none, names_missing_model, server_message
from mindgate.providers._upstream import TRANSPORT_ERRORS, sse_events

if TYPE_CHECKING:
    from mindgate.providers.openai_compat import OpenAICompatClient

log = logging.getLogger("mindgate.providers")

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
"""The events that end a Responses stream (OpenAI sends no ``[DONE]`` on this API)."""
_NO_ROUTE_STATUSES = (405, 501)
_NO_ROUTE: set[str] = set()  # URLs found to have no Responses route, for every model on that server (``auto``)
_HINT = ("set `responses_api: bridge` (or `auto`) in this provider's config; LM Studio serves /v1/responses "
         "from 0.3.29, Ollama from 0.13.3, vLLM and OpenAI do, llama-cpp-python's server does not")


class NativeResponses:
    """``POST {client.base_url}{path}`` on one server, in ``mode`` (``native`` or ``auto``)."""

    def __init__(self, client: OpenAICompatClient, mode: ResponsesAPI, path: str = "/responses") -> None:
        self.client = client
        self.mode = mode
        self.path = path

    @property
    def url(self) -> str:
        return self.client.url(self.path)

    @property
    def usable(self) -> bool:
        """Whether requests may be passed through now (``auto`` stops after the server showed no route)."""
        return self.mode == "native" or (self.mode == "auto" and self.url not in _NO_ROUTE)

    @property
    def _where(self) -> str:
        return f"{self.client.profile.display} at {self.client.base_url}"

    def _no_route(self, detail: str) -> MindgateError:
        if self.mode == "auto":
            _NO_ROUTE.add(self.url)
            log.info("%s has no %s (%s); Responses requests to it are bridged onto chat completions from now on",
                     self._where, self.path, detail)
            return NativeResponsesUnavailable(f"{self._where} has no {self.path} ({detail})")
        return ProviderError(f"{self._where} has no {self.path} route ({detail}), but its provider config says "
                             "responses_api: native", provider=self.client.profile.provider, retryable=False,
                             hint=_HINT)  # no status_code: the gateway's configuration is wrong (502), not the request

    @staticmethod
    def _route_missing(status: int, text: str) -> bool:
        return status in _NO_ROUTE_STATUSES or (status == 404 and not names_missing_model(server_message(text)))

    @staticmethod
    def _unexpected_endpoint(data: Any) -> bool:
        """LM Studio before 0.3.29 answers an unknown route with HTTP 200 and ``{"error": "Unexpected endpoint
        or method. (POST /v1/responses)"}``."""
        return isinstance(data, dict) and "unexpected endpoint" in str(data.get("error", "")).lower()

    async def _failed(self, status: int, text: str, headers: Any, model: str) -> None:
        if self._route_missing(status, text):
            raise self._no_route(f"HTTP {status}: {server_message(text)}")
        await self.client.raise_for_status(status, text, headers, model=model)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ``response`` object the server answers ``body`` with."""
        model = str(body.get("model"))
        try:
            answer = await self.client.upstream.request("POST", self.path, body,
                                                        headers=await self.client.request_headers())
        except TRANSPORT_ERRORS as exc:
            raise self.client.network_error(exc, self.path) from None
        if answer.status >= 400:
            await self._failed(answer.status, answer.text, answer.headers, model)
        data = json_or_none(answer.body)
        if self._unexpected_endpoint(data):
            raise self._no_route(server_message(answer.text))
        if not isinstance(data, dict) or not isinstance(data.get("output"), list) or not data.get("id"):
            raise ProviderError(f"{self._where} answered {self.path} with something that is not a response object: "
                                f"{answer.text[:200]!r}", provider=self.client.profile.provider,
                                status_code=answer.status, retryable=True)
        return data

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The server's events for ``body`` (sent with ``stream: true``) as dicts, up to the terminal one."""
        model = str(body.get("model"))
        headers = {"Accept": "text/event-stream", **(await self.client.request_headers() or {})}
        try:
            async with self.client.upstream.stream("POST", self.path, {**body, "stream": True},
                                                   headers=headers) as response:
                if response.status >= 400:
                    await self._failed(response.status, (await response.read()).decode("utf-8", "replace"),
                                       response.headers, model)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    text = (await response.read()).decode("utf-8", "replace")
                    if self._unexpected_endpoint(json_or_none(text)):
                        raise self._no_route(server_message(text))
                    raise ProviderError(f"{self._where} did not answer {self.path} with an event stream: "
                                        f"{text[:200]!r}", provider=self.client.profile.provider, retryable=True)
                ended = False
                async for sse in sse_events(response):
                    if ended or not sse.data or sse.data.strip() == "[DONE]":
                        continue  # after the end, read on so the connection goes back to the pool
                    event = json_or_none(sse.data)
                    if not isinstance(event, dict) or not isinstance(event.get("type") or sse.event, str):
                        raise ProviderError(f"{self._where} sent a malformed Responses event: {sse.data[:200]!r}",
                                            provider=self.client.profile.provider, retryable=True)
                    event.setdefault("type", sse.event)
                    ended = event["type"] in TERMINAL_EVENTS
                    yield event
                if not ended:
                    raise NetworkError(f"{self._where} ended the Responses stream before its final event",
                                       url=self.client.url(self.path),
                                       hint="the server may have crashed or restarted; retry the request")
        except TRANSPORT_ERRORS as exc:
            raise self.client.network_error(exc, self.path) from None
