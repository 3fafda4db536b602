"""CONTRACT FAKE of Ollama's native ``POST /api/chat`` with structured output and tools (Ollama cannot run
here). It extends :class:`fakes.ollama.OllamaFake` (which owns the rest of the API) with what that chat route
leaves out, per Ollama's API reference (docs/api.md) and its tool-streaming announcement:

* ``format``: a JSON schema makes the answer a minimal instance of it; ``"json"`` makes it a JSON object;
  anything else is HTTP 400 ``{"error": "invalid format: ..."}``.
* ``tools``: when a test sets ``tool_calls`` (OpenAI-shaped), the answer carries them in Ollama's shape
  (``{"function": {"name", "arguments": <object>}}``, no ids), ``content`` empty, ``done_reason: "stop"``;
  streamed, the calls arrive in one line before the final ``done`` line. A model without the ``tools``
  capability answers HTTP 400 ``{"error": "<model> does not support tools"}``.
* ``fail_after``: when set, a stream sends that many content lines and then an ``{"error": ...}`` line, as
  Ollama does when a runner dies mid-generation.
* ``options``, ``keep_alive`` and ``format`` of every request are recorded in ``requests`` (by the harness).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._openai import count_tokens, last_user_text, schema_instance
from .ollama import OllamaFake


class OllamaChatFake(OllamaFake):
    """:class:`OllamaFake` whose ``/api/chat`` also implements ``format`` and ``tools``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_after: int | None = None

    def build_app(self) -> Starlette:
        app = super().build_app()
        app.router.routes.insert(0, Route("/api/chat", self._chat, methods=["POST"]))
        return app

    def _answer(self, body: dict[str, Any]) -> str | JSONResponse:
        fmt = body.get("format")
        messages = body.get("messages") or []
        if fmt is None or fmt == "":
            return self.answer_for({"messages": messages})
        if self.reply is not None:
            return self.answer_for({"messages": messages})
        if isinstance(fmt, dict):
            return json.dumps(schema_instance(fmt))
        if fmt == "json":
            return json.dumps({"answer": last_user_text(messages)})
        return JSONResponse({"error": f'invalid format: "{fmt}" expected "json" or a valid JSON schema'},
                            status_code=400)

    @staticmethod
    def _native_calls(openai_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for call in openai_calls:
            fn = call.get("function") or {}
            args = fn.get("arguments")
            out.append({"function": {"name": fn.get("name"),
                                     "arguments": json.loads(args) if isinstance(args, str) else args}})
        return out

    async def _chat(self, request: Request) -> Response:
        body = await self._body(request)
        name = str(body.get("model") or "")
        model = self.find_model(name)
        messages = body.get("messages") or []
        if model is None or not messages or model.is_embedding:
            return await self._generate(request)  # the base fake owns loading, unloading and 404s
        if body.get("tools") and "tools" not in model.capabilities:
            return JSONResponse({"error": f"registry.ollama.ai/library/{model.name} does not support tools"},
                                status_code=400)
        answer = self._answer(body)
        if isinstance(answer, Response):
            return answer
        try:
            await self._load(model, body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        calls = self._native_calls(self.tool_calls) if body.get("tools") and self.tool_calls else []
        text = "" if calls else answer
        base = {"model": model.name, "created_at": self._timestamp()}
        stats = {"total_duration": 1_000_000, "load_duration": 1_000,
                 "prompt_eval_count": count_tokens(json.dumps(messages)), "eval_count": count_tokens(text or "x")}
        if body.get("stream") is False:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = calls
            return JSONResponse({**base, "message": message, "done": True, "done_reason": "stop", **stats})

        def lines() -> Iterator[str]:
            if calls:
                yield json.dumps({**base, "message": {"role": "assistant", "content": "", "tool_calls": calls},
                                  "done": False}) + "\n"
            else:
                for i, word in enumerate(text.split(" ")):
                    if self.fail_after is not None and i >= self.fail_after:
                        yield json.dumps({"error": "an error was encountered while running the model: "
                                                   "unexpected EOF"}) + "\n"
                        return
                    piece = word if i == 0 else " " + word
                    yield json.dumps({**base, "message": {"role": "assistant", "content": piece},
                                      "done": False}) + "\n"
            yield json.dumps({**base, "message": {"role": "assistant", "content": ""}, "done": True,
                              "done_reason": "stop", **stats}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")
