"""What the in-process engine (llama.cpp) can serve of an OpenAI chat request, checked before the call.

The local engine declares the options it supports (:data:`SUPPORTED_OPTIONS`); a request it cannot serve
is an :class:`~mindgate.errors.InvalidRequestError` (400) naming the option and the target, raised before
llama.cpp sees it, so it never reaches a router as an engine failure (no breaker trip, no fallback, no
exception text in the answer):

* ``n`` above 1 (llama.cpp returns one choice);
* ``image_url`` / ``input_audio`` content parts (the engine takes text only);
* ``logit_bias`` with a token id outside the model's vocabulary or a bias outside [-100, 100]
  (checked against the loaded model by :func:`check_logit_bias`).

Served by adapting, where OpenAI's semantics allow: text content parts are joined into one string, and an
assistant message that carries only ``tool_calls`` gets those calls written out as its text (the chat
templates of GGUF models concatenate ``content`` and would fail on null).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from mindgate.errors import InvalidRequestError
from mindgate.providers._base import CHAT_OPTIONS, Message

log = logging.getLogger("mindgate.providers")

SUPPORTED_OPTIONS = CHAT_OPTIONS  # n only as 1; the others as llama.cpp takes them
_TEXT_PARTS = ("text", "input_text", "output_text")


def check_options(target: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without those that change nothing here (``n: 1``, unknown pass-through fields, logged
    at debug); a 400 for those the target cannot serve."""
    out = dict(options)
    n = out.pop("n", None)
    if n is not None and n != 1:
        raise InvalidRequestError(f"option `n`={n} is not supported by target {target}: it returns one choice",
                                  hint="leave `n` out (or set it to 1) and send several requests")
    for name in sorted(set(out) - SUPPORTED_OPTIONS):  # fields the gateway passes through for other upstreams
        log.debug("target %s ignores the option %r", target, name)
        del out[name]
    return out


def prepare_messages(target: str, messages: Sequence[Message]) -> list[Message]:
    """The messages as the engine's chat templates take them: text content only (400 for other parts),
    never null content."""
    out: list[Message] = []
    for index, message in enumerate(messages):
        prepared = dict(message)
        content = prepared.get("content")
        if isinstance(content, list):
            prepared["content"] = _text_of_parts(target, index, content)
        elif content is None:
            calls = prepared.pop("tool_calls", None)
            prepared["content"] = _calls_as_text(calls) if calls else ""
        out.append(prepared)
    return out


def _text_of_parts(target: str, index: int, parts: list[Any]) -> str:
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            texts.append(str(part.get("text") or ""))
        else:
            raise InvalidRequestError(f"messages[{index}] holds a content part of type {kind!r}, which target "
                                      f"{target} does not support (it takes text only)",
                                      hint="send text parts only, or use a model that accepts them")
    return "\n".join(texts)


def _calls_as_text(calls: Any) -> str:
    rendered = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        rendered.append({"name": function.get("name"), "arguments": function.get("arguments")})
    return json.dumps(rendered, ensure_ascii=False)


def check_logit_bias(target: str, logit_bias: Any, n_vocab: int) -> dict[int, float] | None:
    """``logit_bias`` with integer token ids, after checking each id against the vocabulary."""
    if not logit_bias:
        return None
    if not isinstance(logit_bias, dict):
        raise InvalidRequestError("`logit_bias` must be an object of token id -> bias")
    out: dict[int, float] = {}
    for key, bias in logit_bias.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"`logit_bias` key {key!r} is not a token id",
                                      hint="keys are integer token ids (as strings in JSON)") from None
        if not 0 <= token < n_vocab:
            raise InvalidRequestError(f"`logit_bias` token id {token} is outside the vocabulary of target "
                                      f"{target} (0 to {n_vocab - 1})", hint="use token ids of this model")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise InvalidRequestError(f"`logit_bias` value for token {token} must be a number from -100 to 100")
        out[token] = float(bias)
    return out
