"""Fast JSON-schema-constrained decoding for the in-process llama.cpp engine.

llama-cpp-python applies a JSON-schema grammar to every token of the vocabulary at every step (49k
tokens for SmolLM2), which makes a constrained answer ~15x slower than a free one on 2 cores. This
module constrains the same answers for a bounded subset of JSON schema at the cost of a few checks per
step: the schema is compiled to a regular expression (:func:`schema_regex`), and a logits processor
(:class:`SchemaConstraint`) walks the candidate tokens from the most likely down and keeps the first one
whose bytes leave the answer a prefix of some match (``regex``'s partial matching). Once the answer is a
complete match only end-of-generation is allowed. Whitespace between JSON tokens is at most one space.

Supported: objects whose properties are listed in ``properties`` (emitted in that order; the first one
required), strings (``enum``, ``minLength`` / ``maxLength``, no ``\\u`` escapes), integers (``enum`` or
any), numbers, booleans, null, and arrays with ``items`` (``maxItems`` / ``minItems``). Anything else
raises :class:`Unsupported` and the caller falls back to llama.cpp's own grammar.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import regex

_SP = b" ?"
_STRING_CHAR = rb'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt])'
_INTEGER = rb"-?(?:0|[1-9][0-9]{0,15})"
_NUMBER = rb"-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,16})?(?:[eE][-+]?[0-9]{1,3})?"
_CANDIDATES = 64  # checked before falling back to a full sort of the vocabulary


class Unsupported(ValueError):
    """The schema uses something :func:`schema_regex` does not compile."""


def _literal(value: Any) -> bytes:
    return regex.escape(json.dumps(value).encode("utf-8"))


def schema_regex(schema: dict[str, Any]) -> bytes:
    """A regular expression (bytes) matching exactly the compact JSON texts valid under ``schema``."""
    if not isinstance(schema, dict):
        raise Unsupported("the schema is not an object")
    if "enum" in schema:
        return b"(?:" + b"|".join(_literal(v) for v in schema["enum"]) + b")"
    if "const" in schema:
        return _literal(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if high is None or set(schema) - {"type", "minLength", "maxLength", "description"}:
            raise Unsupported("strings need maxLength and no format or pattern")
        return b'"' + _STRING_CHAR + b"{%d,%d}" % (low, int(high)) + b'"'
    if kind == "integer":
        return _INTEGER
    if kind == "number":
        return _NUMBER
    if kind == "boolean":
        return b"(?:true|false)"
    if kind == "null":
        return b"null"
    if kind == "array":
        return _array(schema)
    if kind == "object":
        return _object(schema)
    raise Unsupported(f"type {kind!r} is not supported")


def _array(schema: dict[str, Any]) -> bytes:
    if not isinstance(schema.get("items"), dict) or schema.get("maxItems") is None:
        raise Unsupported("arrays need one items schema and maxItems")
    item = schema_regex(schema["items"])
    low, high = int(schema.get("minItems", 0)), int(schema["maxItems"])
    if high == 0:
        return rb"\[" + _SP + rb"\]"
    rest = b"(?:" + _SP + b"," + _SP + item + b"){%d,%d}" % (max(low - 1, 0), high - 1)
    body = item + rest
    return rb"\[" + _SP + (body if low > 0 else b"(?:" + body + b")?") + _SP + rb"\]"


def _object(schema: dict[str, Any]) -> bytes:
    properties: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    if not properties or next(iter(properties)) not in required:
        raise Unsupported("objects need properties, the first one required")
    parts = []
    for n, (name, sub) in enumerate(properties.items()):
        pair = _literal(name) + _SP + b":" + _SP + schema_regex(sub)
        if n == 0:
            parts.append(pair)
        else:
            pair = _SP + b"," + _SP + pair
            parts.append(pair if name in required else b"(?:" + pair + b")?")
    return rb"\{" + _SP + b"".join(parts) + _SP + rb"\}"


_vocab_cache: dict[str, list[bytes]] = {}
_vocab_lock = threading.Lock()


def vocabulary(llama: Any, key: str) -> list[bytes]:
    """Every token's bytes (special tokens are empty), computed once per model file."""
    with _vocab_lock:
        if key not in _vocab_cache:
            _vocab_cache[key] = [llama.detokenize([t]) for t in range(llama.n_vocab())]
        return _vocab_cache[key]


class SchemaConstraint:
    """A llama-cpp-python logits processor that allows one token per step: the most likely one (after a
    frequency penalty on the tokens generated so far) that keeps the answer valid under the schema.

    Greedy by construction, so use it with temperature 0. ``complete`` tells whether the answer is done.
    """

    def __init__(self, pattern: bytes, vocab: Sequence[bytes], eos: int, *, frequency_penalty: float = 0.0) -> None:
        self.pattern = regex.compile(pattern)
        self.vocab = vocab
        self.eos = eos
        self.frequency_penalty = frequency_penalty
        self.prompt_len: int | None = None
        self.text = b""
        self.complete = False

    def _viable(self, text: bytes) -> bool:
        return self.pattern.fullmatch(text, partial=True) is not None

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        ids = np.asarray(input_ids)
        if self.prompt_len is None:
            self.prompt_len = len(ids)
        generated = ids[self.prompt_len:]
        self.text = b"".join(self.vocab[int(t)] for t in generated)
        out = np.full_like(scores, -np.inf)
        if self.pattern.fullmatch(self.text) is not None:
            self.complete = True
            out[self.eos] = 0.0
            return out
        logits = np.array(scores, dtype=np.float32, copy=True)
        if self.frequency_penalty and len(generated):
            tokens, counts = np.unique(generated, return_counts=True)
            logits[tokens] -= self.frequency_penalty * counts
        chosen = self._best(logits, np.argpartition(-logits, _CANDIDATES)[:_CANDIDATES])
        if chosen is None:
            chosen = self._best(logits, np.arange(len(logits)))
        out[self.eos if chosen is None else chosen] = 0.0
        return out

    def _best(self, logits: np.ndarray, candidates: np.ndarray) -> int | None:
        for token in candidates[np.argsort(-logits[candidates], kind="stable")]:
            piece = self.vocab[int(token)]
            if piece and np.isfinite(logits[token]) and self._viable(self.text + piece):
                return int(token)
        return None
