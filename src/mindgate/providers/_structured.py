"""Structured (JSON) output that works across servers with different support.

Modes, strongest first: ``json_schema`` (OpenAI's form; the only JSON form LM Studio accepts),
``json_object`` (llama.cpp server, Ollama; LM Studio answers it with HTTP 400) and ``text`` (the schema
is put in the prompt and the answer parsed tolerantly). A mode the endpoint rejects is skipped and the
mode that worked is remembered per endpoint, so later calls go straight to it.

An answer that is not valid JSON, or that ``validate`` rejects, is retried once with the error shown to
the model; a second failure raises :class:`~mindgate.errors.StructuredOutputError`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mindgate.errors import ProviderError, StructuredOutputError
from mindgate.providers._base import ChatModel, ChatResponse, Message

T = TypeVar("T")

ALL_MODES = ("json_schema", "json_object", "text")
_REJECTION_STATUSES = frozenset({400, 404, 415, 422, 500, 501})

_learned: dict[str, str] = {}
_learned_lock = threading.Lock()


def learned_mode(endpoint_key: str) -> str | None:
    """The structured-output mode that last worked for an endpoint, if any."""
    return _learned.get(endpoint_key)


def _remember(endpoint_key: str, mode: str) -> None:
    with _learned_lock:
        _learned[endpoint_key] = mode


def response_format(mode: str, schema: dict[str, Any], name: str) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def parse_json_tolerant(text: str | None) -> Any:
    """Parse JSON from a model's answer: plain JSON, JSON in a ``` fence, or the first balanced
    ``{...}``/``[...]`` in surrounding prose. Raises ValueError with the reason."""
    if text is None or not text.strip():
        raise ValueError("the answer was empty")
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    fence = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.DOTALL)
    if fence:
        try:
            return json.loads(fence.group(1).strip())
        except ValueError:
            pass
    for start, char in enumerate(stripped):
        if char in "{[":
            end = _balanced_end(stripped, start)
            if end is not None:
                try:
                    return json.loads(stripped[start:end + 1])
                except ValueError:
                    continue
    raise ValueError(f"no JSON object found in the answer: {stripped[:200]!r}")


def _balanced_end(text: str, start: int) -> int | None:
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i
    return None


def _modes_for(model: ChatModel) -> list[str]:
    supported = list(getattr(model, "structured_modes", ALL_MODES))
    learned = learned_mode(model.endpoint_key)
    if learned in supported:
        supported.remove(learned)
        supported.insert(0, learned)
    return supported


# Keywords whose value is a map of names to schemas, a list of schemas, or one schema (or a list).
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_VALUES = frozenset({"items", "additionalProperties", "not", "contains", "if", "then", "else",
                            "propertyNames", "additionalItems", "unevaluatedItems", "unevaluatedProperties"})


class _Recursive(ValueError):
    pass


# The order keywords are written in a prompt: what a value is, then what constrains it, then the rest.
_PROMPT_ORDER = ("type", "properties", "items", "enum", "minLength", "maxLength", "minItems", "maxItems",
                 "required")


def prompt_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as a model reads it best in a prompt, as a person would write it: local ``$ref`` inlined;
    ``$defs``, ``title`` and null defaults dropped (pydantic's ``model_json_schema()`` has all three);
    ``const`` as a one-value ``enum``; ``type`` first and ``additionalProperties`` last. A recursive schema is
    returned unchanged."""

    def walk(node: Any, expanding: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return [walk(n, expanding) for n in node] if isinstance(node, list) else node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            if ref in expanding:
                raise _Recursive(ref)
            target: Any = schema
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
            if isinstance(target, dict):
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**target, **siblings}, (*expanding, ref))
        out: dict[str, Any] = {}
        for key, value in node.items():
            # inside a dict walked here, keys are keywords (property names sit in the _SCHEMA_MAPS values)
            if key in ("title", "$defs", "definitions") or (key == "default" and value is None):
                continue
            if key == "const" and "enum" not in node:
                out["enum"] = [value]
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: walk(sub, expanding) for name, sub in value.items()}
            elif key in _SCHEMA_LISTS or key in _SCHEMA_VALUES:
                out[key] = walk(value, expanding)
            else:
                out[key] = value
        rank = {key: n for n, key in enumerate(_PROMPT_ORDER)}
        last = len(_PROMPT_ORDER) + 1
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], last if kv[0] == "additionalProperties"
                                                                 else len(_PROMPT_ORDER))))

    try:
        result: dict[str, Any] = walk(schema, ())
    except _Recursive:
        return schema
    return result


def _with_schema_prompt(messages: Sequence[Message], schema: dict[str, Any]) -> list[Message]:
    instruction = ("Answer with only a JSON value that matches this JSON schema, no prose, no code fence:\n"
                   + json.dumps(prompt_schema(schema), separators=(",", ":")))
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content') or ''}\n\n{instruction}"
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


async def complete_json(model: ChatModel, messages: Sequence[Message], schema: dict[str, Any], *,
                        name: str = "response", validate: Callable[[Any], T] | None = None,
                        **options: Any) -> T | Any:
    """Ask ``model`` for JSON matching ``schema``; return ``validate(parsed)`` (or the parsed value).

    ``validate`` raises ValueError (pydantic's ValidationError is one) to reject an answer.
    """
    result, _ = await _ladder(model, messages, schema, name, validate, options)
    return result


async def complete_structured(model: ChatModel, messages: Sequence[Message], schema: dict[str, Any], *,
                              name: str = "response", **options: Any) -> ChatResponse:
    """Like :func:`complete_json`, but the answer itself: its ``content`` is the JSON text (compact), the
    rest (model, usage, finish reason) as the endpoint reported it. For APIs that return the JSON to the
    caller (``response_format`` / ``text.format`` of type json_schema)."""
    parsed, response = await _ladder(model, messages, schema, name, None, options)
    response.content = json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
    return response


async def _ladder(model: ChatModel, messages: Sequence[Message], schema: dict[str, Any], name: str,
                  validate: Callable[[Any], T] | None, options: dict[str, Any]) -> tuple[T | Any, ChatResponse]:
    last_rejection: ProviderError | None = None
    for mode in _modes_for(model):
        prompt = list(messages) if mode == "json_schema" else _with_schema_prompt(messages, schema)
        fmt = response_format(mode, schema, name)
        try:
            result = await _ask_and_parse(model, prompt, fmt, validate, options)
        except ProviderError as exc:
            if exc.status_code in _REJECTION_STATUSES and mode != "text" and \
                    not isinstance(exc, StructuredOutputError):
                last_rejection = exc
                continue
            raise
        _remember(model.endpoint_key, mode)
        return result
    raise StructuredOutputError(f"{model} rejected every structured-output mode",
                                provider=model.provider,
                                hint=f"last error: {last_rejection}" if last_rejection else None)


async def _ask_and_parse(model: ChatModel, prompt: list[Message], fmt: dict[str, Any] | None,
                         validate: Callable[[Any], T] | None, options: dict[str, Any]
                         ) -> tuple[T | Any, ChatResponse]:
    attempt_messages = prompt
    error: str = ""
    for attempt in range(2):
        response = await model.acomplete(attempt_messages, response_format=fmt, **options)
        try:
            parsed = parse_json_tolerant(response.content)
            return (validate(parsed) if validate else parsed), response
        except ValueError as exc:
            error = str(exc)
            if attempt == 0:
                attempt_messages = [*prompt, {"role": "assistant", "content": response.content or ""},
                                    {"role": "user", "content": f"That answer was not valid: {error[:500]}. "
                                                                "Answer again with only the corrected JSON."}]
    raise StructuredOutputError(f"{model} did not return valid structured output after a retry: {error[:300]}",
                                provider=model.provider,
                                hint="use a larger or instruction-tuned model, or simplify the request")
