"""CONTRACT FAKE of a server with its own Responses API (``POST /v1/responses``), as OpenAI, vLLM, LM Studio
>= 0.3.29 and Ollama >= 0.13.3 serve it; the llama-cpp-python server the other tests use has no such route.
Not a vendor and not a model: a small real HTTP server on 127.0.0.1 answering in OpenAI's documented shapes
(API reference and the ``openai`` SDK's ``types/responses``):

* the ``response`` object (``id`` ``resp_...``, ``object: "response"``, ``status``, ``output`` items, ``usage``
  with ``input_tokens`` / ``output_tokens`` and their details, and the echoed request settings);
* streamed, the semantic events with a ``sequence_number`` counting from 0: ``response.created``,
  ``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
  ``response.output_text.delta``..., ``response.output_text.done``, ``response.content_part.done``,
  ``response.output_item.done``, and for a function call ``response.function_call_arguments.delta`` /
  ``.done``; then ``response.completed`` (no ``[DONE]`` on this API);
* errors in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: an unknown parameter is a 400
  ``unknown_parameter`` naming it, an unknown model a 404 ``model_not_found``, ``fail_next`` answers the next
  requests with a chosen status.

It also serves ``/v1/chat/completions`` (the shared OpenAI surface of :mod:`fakes._openai`), so the same server
can be bridged. Knobs: ``responses_route=False`` answers ``/v1/responses`` with FastAPI's plain 404
``{"detail": "Not Found"}`` (a server without the route); ``tool_calls`` (function calls returned when the
request offers tools, unless its input ends with a tool's result: then the answer is text, as a model's would
be); ``sequence_numbers=False`` leaves ``sequence_number`` out (servers that do not number their events);
``cut_after`` drops the connection after that many events. Answers are ``"echo: <last user text>"`` (or
``reply``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._openai import OpenAISurface, count_tokens, openai_error
from ._server import FakeServer

RESPONSES_FIELDS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "max_tool_calls", "temperature", "top_p", "text", "reasoning", "metadata", "user", "store",
    "previous_response_id", "stream", "stream_options", "background", "background_options", "conversation",
    "context_management", "include", "truncation", "service_tier", "prompt", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "safety_identifier", "top_logprobs", "moderation",
    "access_programs", "image",
    "client_metadata",  # not in the SDK's params, but sent by OpenAI's own Codex CLI, so OpenAI takes it
})
"""The request fields of OpenAI's ``responses.create`` (the ``openai`` SDK's ``ResponseCreateParams``)."""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p)
    return ""


def last_user_input(raw: Any) -> str:
    """The text of the last user message of a Responses ``input`` (a string is one)."""
    if isinstance(raw, str):
        return raw
    for item in reversed(raw if isinstance(raw, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


class CutStream(Exception):
    """Raised inside the event generator to drop the connection mid-stream."""


class ResponsesSurface(OpenAISurface):
    """Mixin: OpenAI's Responses answers (JSON or the event stream) for a validated request, for any fake that
    serves ``/v1/responses`` (this module's server; LM Studio's fake as LM Studio >= 0.3.29)."""

    sequence_numbers: bool
    cut_after: int | None

    def _init_responses(self) -> None:
        self._init_surface()
        self.sequence_numbers = True
        self.cut_after = None

    def responses_answer(self, body: dict[str, Any], model_id: str) -> Response:
        """The answer to ``body`` from ``model_id``: unknown parameters and a missing ``input`` are OpenAI's
        400s; otherwise a ``response`` object, or its events when ``stream`` is set."""
        unknown = sorted(set(body) - RESPONSES_FIELDS)
        if unknown:
            return openai_error(400, f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter")
        if not body.get("input"):
            return openai_error(400, "Missing required parameter: 'input'.", param="input",
                                code="missing_required_parameter")
        body = {**body, "model": model_id}
        if body.get("stream"):
            return StreamingResponse(self._events(body), media_type="text/event-stream")
        return JSONResponse(self._response(body, "completed", self._output(body)))

    def _calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        raw = body.get("input")
        answered = isinstance(raw, list) and raw and isinstance(raw[-1], dict) \
            and raw[-1].get("type") == "function_call_output"
        if not body.get("tools") or not self.tool_calls or answered:
            return []
        return [{"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}", "call_id": call.get("id"),
                 "name": call["function"]["name"], "arguments": call["function"]["arguments"], "status": "completed"}
                for call in self.tool_calls]

    def _output(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        calls = self._calls(body)
        if calls:
            return calls
        text = self.reply if isinstance(self.reply, str) else f"echo: {last_user_input(body.get('input'))}"
        return [{"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}]

    def _response(self, body: dict[str, Any], status: str, output: list[dict[str, Any]],
                  response_id: str | None = None) -> dict[str, Any]:
        words = sum(count_tokens(json.dumps(item)) for item in output)
        prompt = count_tokens(json.dumps(body.get("input")))
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": words,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + words}
        return {
            "id": response_id or f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
            "status": status, "background": False, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"], "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": usage if status == "completed" else None,
            "user": body.get("user"), "metadata": body.get("metadata") or {},
        }

    def _events(self, body: dict[str, Any]) -> Iterator[str]:
        response_id = f"resp_{uuid.uuid4().hex}"
        output = self._output(body)
        events: list[dict[str, Any]] = []
        started = self._response(body, "in_progress", [], response_id)
        events += [{"type": "response.created", "response": started},
                   {"type": "response.in_progress", "response": started}]
        for index, item in enumerate(output):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                events.append({"type": "response.output_item.added", "output_index": index,
                               "item": {**item, "status": "in_progress", "content": []}})
                empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                events.append({"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                               "content_index": 0, "part": empty})
                for n, word in enumerate(text.split(" ")):
                    events.append({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                                   "content_index": 0, "delta": word if n == 0 else " " + word, "logprobs": []})
                events.append({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                               "content_index": 0, "text": text, "logprobs": []})
                events.append({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                               "content_index": 0, "part": item["content"][0]})
            else:
                events.append({"type": "response.output_item.added", "output_index": index,
                               "item": {**item, "arguments": "", "status": "in_progress"}})
                events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                               "output_index": index, "delta": item["arguments"]})
                events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                               "output_index": index, "name": item["name"], "arguments": item["arguments"]})
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        final = self._response(body, "completed", output, response_id)
        events.append({"type": "response.completed", "response": final})
        for number, event in enumerate(events):
            if self.cut_after is not None and number >= self.cut_after:
                raise CutStream("the fake drops the connection")
            if self.sequence_numbers:
                event["sequence_number"] = number
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


class ResponsesAPIFake(ResponsesSurface, FakeServer):
    """See the module docstring."""

    def __init__(self, models: tuple[str, ...] = ("gpt-4o-mini",)) -> None:
        FakeServer.__init__(self)
        self._init_responses()
        self.models = list(models)
        self.responses_route = True
        self.fail_next: list[tuple[int, dict[str, Any]]] = []

    def response_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies ``/v1/responses`` received, in order."""
        return [r.json for r in self.requests_to("/v1/responses", "POST")]

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/models", self._models, methods=["GET"]),
                                 Route("/v1/chat/completions", self._chat, methods=["POST"]),
                                 Route("/v1/responses", self._responses, methods=["POST"])])

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                                                        for m in self.models]})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        return self.chat_response(body, str(body.get("model")))

    async def _responses(self, request: Request) -> Response:
        if not self.responses_route:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await request.json()
        if self.fail_next:
            status, error = self.fail_next.pop(0)
            return JSONResponse({"error": error}, status_code=status)
        if body.get("model") not in self.models:
            return openai_error(404, f"The model `{body.get('model')}` does not exist or you do not have access to it.",
                                code="model_not_found")
        return self.responses_answer(body, str(body["model"]))
