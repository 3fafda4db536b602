"""The OpenAI-compatible surface (``/v1/models``, ``/v1/chat/completions``, ``/v1/embeddings``) the vendor
fakes share: deterministic answers, SSE streaming and hash-based embeddings, in OpenAI's documented shapes.

Determinism: the chat answer is ``reply`` when a test sets one, else ``"echo: <last user message>"``;
with ``response_format: json_schema`` and no ``reply`` the answer is a minimal instance of the schema;
an embedding is a unit vector seeded by the SHA-256 of the text, so equal texts give equal vectors.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from starlette.responses import JSONResponse, StreamingResponse

Reply = str | Callable[[list[dict[str, Any]]], str]


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words, at least 1."""
    return max(1, len(text.split()))


def hash_embedding(text: str, dims: int) -> list[float]:
    """A unit vector determined by ``text`` alone."""
    rng = random.Random(hashlib.sha256(text.encode("utf-8")).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def schema_instance(schema: dict[str, Any]) -> Any:
    """A minimal value that validates against a (simple) JSON schema."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: schema_instance(props[name]) for name in schema.get("required", list(props))}
    if kind == "array":
        return [schema_instance(schema["items"])] * schema.get("minItems", 0) if "items" in schema else []
    return {"string": "x", "integer": 0, "number": 0, "boolean": False, "null": None}.get(kind, "x")


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


class OpenAISurface:
    """Mixin holding what a test may set on any fake: ``reply`` (str or callable of the messages) and
    ``tool_calls`` (OpenAI tool-call dicts returned whenever the request carries ``tools``)."""

    reply: Reply | None
    tool_calls: list[dict[str, Any]] | None

    def _init_surface(self) -> None:
        self.reply = None
        self.tool_calls = None

    def answer_for(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        if self.reply is not None:
            return self.reply(messages) if callable(self.reply) else self.reply
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            return json.dumps(schema_instance(schema))
        if response_format.get("type") == "json_object":
            return json.dumps({"answer": last_user_text(messages)})
        return f"echo: {last_user_text(messages)}"

    def chat_response(self, body: dict[str, Any], model_id: str) -> JSONResponse | StreamingResponse:
        content = self.answer_for(body)
        tool_calls = self.tool_calls if body.get("tools") and self.tool_calls else None
        prompt_tokens = sum(count_tokens(str(m.get("content") or "")) for m in body.get("messages") or [])
        completion_tokens = count_tokens(content)
        finish = "tool_calls" if tool_calls else "stop"
        created = int(time.time())
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:20]}"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else content}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return JSONResponse({
                "id": completion_id, "object": "chat.completion", "created": created, "model": model_id,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage, "system_fingerprint": model_id,
            })
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> str:
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": model_id, "system_fingerprint": model_id,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            return f"data: {json.dumps(data)}\n\n"

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            if tool_calls:
                for i, call in enumerate(tool_calls):
                    yield chunk({"tool_calls": [{"index": i, **call}]}, None)
            else:
                words = content.split(" ")
                for i, word in enumerate(words):
                    yield chunk({"content": word if i == 0 else " " + word}, None)
            yield chunk({}, finish)
            if include_usage:
                data = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                        "model": model_id, "choices": [], "usage": usage}
                yield f"data: {json.dumps(data)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @staticmethod
    def embeddings_response(inputs: list[str], model_id: str, dims: int) -> JSONResponse:
        tokens = sum(count_tokens(t) for t in inputs)
        return JSONResponse({
            "object": "list",
            "data": [{"object": "embedding", "embedding": hash_embedding(t, dims), "index": i}
                     for i, t in enumerate(inputs)],
            "model": model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })
