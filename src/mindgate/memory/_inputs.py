"""Validation of what callers hand to the Memory API: messages, scopes, metadata, mem0 v2 filters."""

from __future__ import annotations

import json
import math
from typing import Any

from mindgate.errors import FilterError, InvalidRequestError
from mindgate.memory.stores._base import Scope
from mindgate.providers._base import content_text

ROLES = ("system", "user", "assistant", "tool", "developer")
MAX_TEXT_CHARS = 100_000
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 32
SCOPE_KEYS = ("user_id", "agent_id", "run_id")


def normalize_messages(messages: Any) -> list[dict[str, Any]]:
    """A string, one message dict, or a list of message dicts -> a list of ``{"role", "content", ...}``
    with string content. Keeps caller ids (``id`` / ``message_id`` / ``turn_id``) for provenance."""
    if isinstance(messages, str):
        items: list[Any] = [{"role": "user", "content": messages}]
    elif isinstance(messages, dict):
        items = [messages]
    elif isinstance(messages, list):
        items = messages
    else:
        raise InvalidRequestError(f"messages must be a string, a message dict or a list of them, "
                                  f"got {type(messages).__name__}")
    if not items:
        raise InvalidRequestError("messages is empty", hint="pass at least one message")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"message {i} must be a dict with role and content, got {type(item).__name__}")
        role = item.get("role", "user")
        if role not in ROLES:
            raise InvalidRequestError(f"message {i} has unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")
        content = _text_of(item.get("content"), i)
        message: dict[str, Any] = {"role": role, "content": content}
        for key in ("id", "message_id", "turn_id", "name"):
            if item.get(key) is not None:
                message[key] = _message_ref(item[key], i, key)
        out.append(message)
    return out


def _message_ref(value: Any, index: int, key: str) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        return value
    if isinstance(value, str) and len(value) <= 1024:
        return check_text(f"message {index} {key}", value)
    raise InvalidRequestError(f"message {index} {key} must be a string (at most 1024 characters) or a 64-bit "
                              f"integer, got {type(value).__name__}")


def check_text(what: str, text: str) -> str:
    """``text`` itself, or :class:`InvalidRequestError` when it cannot be stored as UTF-8 (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"{what} is not valid Unicode: it holds a lone surrogate ({text[exc.start]!r} at "
                                  f"position {exc.start})",
                                  hint="send proper UTF-8 text; U+D800-U+DFFF alone cannot be stored") from None
    return text


def check_memory_id(memory_id: Any) -> str:
    if not isinstance(memory_id, str) or not memory_id:
        raise InvalidRequestError(f"memory_id must be a non-empty string, got {memory_id!r}")
    return check_text("memory_id", memory_id)


def _text_of(content: Any, index: int) -> str:
    if isinstance(content, str | list) or content is None:  # OpenAI content parts: keep the text parts
        text = content_text(content)
    else:
        raise InvalidRequestError(f"message {index} content must be a string or a list of content parts, "
                                  f"got {type(content).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequestError(f"message {index} is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}",
                                  hint="split it into several messages")
    return check_text(f"message {index}", text)


def message_ref(message: dict[str, Any]) -> Any:
    """The caller's identifier of a message, when it gave one."""
    for key in ("id", "message_id", "turn_id"):
        if message.get(key) is not None:
            return message[key]
    return None


def validate_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequestError(f"metadata must be a dict, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str) or not key:
            raise InvalidRequestError(f"metadata keys must be non-empty strings, got {key!r}")
        if key in SCOPE_KEYS:
            raise InvalidRequestError(f"metadata may not contain {key!r}", hint=f"pass {key}= as an argument instead")
    if _depth(metadata) > MAX_METADATA_DEPTH:
        raise InvalidRequestError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels",
                                  hint="flatten it; filters address top-level keys")
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"metadata must be JSON-serialisable with finite numbers: {exc}") from None
    size = len(check_text("metadata", encoded).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidRequestError(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
    return dict(metadata)


def _depth(value: Any, level: int = 0) -> int:
    """How deeply dicts and lists nest in ``value`` (a scalar: 0), counted no further than past the limit."""
    if not isinstance(value, dict | list) or level > MAX_METADATA_DEPTH:
        return level
    items = value.values() if isinstance(value, dict) else value
    return max([level + 1, *(_depth(v, level + 1) for v in items)])


def scope_from(user_id: str | None, agent_id: str | None, run_id: str | None,
               filters: dict[str, Any] | None = None) -> tuple[Scope, dict[str, Any] | None]:
    """The scope from keyword ids, or from mem0 v2 ``filters`` that carry them (top level or inside a
    top-level AND). Returns the scope and the remaining metadata filters."""
    ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    if filters is not None and not isinstance(filters, dict):
        raise FilterError(f"filters must be a dict, got {type(filters).__name__}",
                          hint='e.g. {"category": "movies"} or {"AND": [...]}')
    rest = dict(filters) if filters else None
    if rest:
        for key in SCOPE_KEYS:
            if key in rest:
                _merge_id(ids, key, rest.pop(key))
        if isinstance(rest.get("AND"), list):
            remaining = []
            for clause in rest["AND"]:
                if isinstance(clause, dict) and len(clause) == 1 and next(iter(clause)) in SCOPE_KEYS:
                    key, value = next(iter(clause.items()))
                    _merge_id(ids, key, value)
                else:
                    remaining.append(clause)
            if remaining:
                rest["AND"] = remaining
            else:
                del rest["AND"]
    return Scope(**ids), (rest or None)


def _merge_id(ids: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, dict):
        if set(value) != {"eq"}:
            raise InvalidRequestError(f"filters.{key} must be an exact id (or {{'eq': id}})")
        value = value["eq"]
    if ids[key] is not None and ids[key] != value:
        raise InvalidRequestError(f"{key} is given twice with different values ({ids[key]!r} and {value!r})")
    ids[key] = value


def check_limit(name: str, value: Any, *, maximum: int = 10_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise InvalidRequestError(f"{name} must be an integer between 1 and {maximum}, got {value!r}")
    return value


def check_threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise InvalidRequestError(f"threshold must be a number between 0 and 1, got {value!r}")
    return float(value)
