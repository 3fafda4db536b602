"""Fast JSON-schema-constrained decoding for the in-process llama.cpp engine.

llama-cpp-python applies a JSON-schema grammar to every token of the vocabulary at every step (49k
tokens for SmolLM2), which makes a constrained answer ~15x slower than a free one on 2 cores. This
module constrains the same answers for a bounded subset of JSON schema at the cost of a few checks per
step: the schema is compiled to a regular expression (:func:`schema_regex`), and a logits processor
(:class:`SchemaConstraint`) walks the candidate tokens from the most likely down and keeps the first one
whose bytes leave the answer a prefix of some match (``regex``'s partial matching). Once the answer is a
complete match only end-of-generation is allowed. Whitespace between JSON tokens is at most one space.

Supported, which covers what pydantic's ``model_json_schema()`` emits for bounded models: objects whose
properties are listed in ``properties`` (emitted in that order, any of them optional), strings (``enum``,
``const``, ``minLength`` / ``maxLength``, no ``\\u`` escapes), integers (``enum``, ``const``, any, or a
``minimum`` / ``maximum`` range), numbers, booleans, null, ``type`` lists, arrays with ``items``
(``maxItems`` / ``minItems``), ``anyOf`` / ``oneOf`` (any branch; ``oneOf``'s exclusivity is not
checked, pydantic's unions are disjoint), ``allOf`` of one schema, and local ``$ref`` (``#/$defs/...``,
``#/definitions/...``) that do not recurse. Annotations (``title``, ``description``, ``default``, ...) are
ignored. Anything else (an unbounded string or array, ``pattern``, ``format``, recursion, a keyword not
listed here) raises :class:`Unsupported` and the caller falls back to llama.cpp's own grammar.
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


def _alternatives(parts: Sequence[bytes]) -> bytes:
    return b"(?:" + b"|".join(parts) + b")"


# Keywords that do not constrain the value.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
                          "writeOnly", "$schema", "$id", "$defs", "definitions",
                          "discriminator"})  # OpenAPI's note on a oneOf; the branches already decide
# The constraining keywords each type understands here.
_KEYWORDS: dict[str, frozenset[str]] = {
    "string": frozenset({"minLength", "maxLength"}),
    "integer": frozenset({"minimum", "maximum"}),
    "number": frozenset(),
    "boolean": frozenset(),
    "null": frozenset(),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "object": frozenset({"properties", "required", "additionalProperties"}),
}
_MAX_RANGE = 256  # an integer range up to this wide becomes an alternation of its values


def schema_regex(schema: dict[str, Any]) -> bytes:
    """A regular expression (bytes) matching compact JSON texts valid under ``schema``.

    Every match is valid under the schema; objects match with their listed properties only, in the
    listed order (a subset of the valid texts, which is what decoding needs).
    """
    if not isinstance(schema, dict):
        raise Unsupported("the schema is not an object")
    return _Compiler(schema).compile(schema)


class _Compiler:
    """Compiles one schema; ``$ref`` is resolved against the root it was made with."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.expanding: list[str] = []

    def compile(self, schema: Any) -> bytes:
        if not isinstance(schema, dict):
            raise Unsupported("a subschema is not an object")
        keys = set(schema) - _ANNOTATIONS
        for combinator in ("$ref", "anyOf", "oneOf", "allOf"):
            if combinator in keys:
                if keys != {combinator}:
                    raise Unsupported(f"{combinator} beside {sorted(keys - {combinator})} is not supported")
                return self._combined(combinator, schema[combinator])
        if "enum" in keys or "const" in keys:
            values = schema["enum"] if "enum" in schema else [schema["const"]]
            if not isinstance(values, list) or not values or keys - {"enum", "const", "type"}:
                raise Unsupported("enum/const needs a non-empty list of values and nothing else but type")
            return _alternatives([_literal(v) for v in values])
        kind = schema.get("type")
        kinds: list[Any] = kind if isinstance(kind, list) else [kind]
        if not kinds or any(not isinstance(k, str) or k not in _KEYWORDS for k in kinds):
            raise Unsupported(f"type {kind!r} is not supported")
        unknown = keys - {"type"} - set().union(*(_KEYWORDS[k] for k in kinds))
        if unknown:
            raise Unsupported(f"keywords {sorted(unknown)} are not supported")
        parts = [self._typed(k, {key: schema[key] for key in _KEYWORDS[k] if key in schema}) for k in kinds]
        return parts[0] if len(parts) == 1 else _alternatives(parts)

    def _combined(self, combinator: str, value: Any) -> bytes:
        if combinator == "$ref":
            return self._ref(value)
        if not isinstance(value, list) or not value or (combinator == "allOf" and len(value) != 1):
            raise Unsupported(f"{combinator} needs a non-empty list (allOf: of one schema)")
        parts = [self.compile(branch) for branch in value]
        return parts[0] if len(parts) == 1 else _alternatives(parts)

    def _ref(self, ref: Any) -> bytes:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise Unsupported(f"$ref {ref!r} is not a local reference")
        if ref in self.expanding:
            raise Unsupported(f"$ref {ref!r} is recursive")
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise Unsupported(f"$ref {ref!r} does not resolve")
            target = target[part]
        self.expanding.append(ref)
        try:
            return self.compile(target)
        finally:
            self.expanding.pop()

    def _typed(self, kind: str, schema: dict[str, Any]) -> bytes:
        if kind == "string":
            low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
            if high is None:
                raise Unsupported("strings need maxLength")
            return b'"' + _STRING_CHAR + b"{%d,%d}" % (low, int(high)) + b'"'
        if kind == "integer":
            return _integer(schema.get("minimum"), schema.get("maximum"))
        if kind == "number":
            return _NUMBER
        if kind == "boolean":
            return b"(?:true|false)"
        if kind == "null":
            return b"null"
        if kind == "array":
            return self._array(schema)
        return self._object(schema)

    def _array(self, schema: dict[str, Any]) -> bytes:
        if not isinstance(schema.get("items"), dict) or schema.get("maxItems") is None:
            raise Unsupported("arrays need one items schema and maxItems")
        item = self.compile(schema["items"])
        low, high = int(schema.get("minItems", 0)), int(schema["maxItems"])
        if high == 0:
            return rb"\[" + _SP + rb"\]"
        rest = b"(?:" + _SP + b"," + _SP + item + b"){%d,%d}" % (max(low - 1, 0), high - 1)
        body = item + rest
        return rb"\[" + _SP + (body if low > 0 else b"(?:" + body + b")?") + _SP + rb"\]"

    def _object(self, schema: dict[str, Any]) -> bytes:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            raise Unsupported("objects need properties (free-form objects are not supported)")
        required = set(schema.get("required") or [])
        if required - set(properties):
            raise Unsupported(f"required {sorted(required - set(properties))} are not in properties")
        names = list(properties)
        pairs = [_literal(name) + _SP + b":" + _SP + self.compile(properties[name]) for name in names]
        # tails[i]: the properties after i, each preceded by a comma, the optional ones optional.
        tails = [b""] * (len(names) + 1)
        for i in range(len(names) - 1, -1, -1):
            pair = _SP + b"," + _SP + pairs[i]
            tails[i] = (pair if names[i] in required else b"(?:" + pair + b")?") + tails[i + 1]
        # The first property written is any one up to the first required one.
        first = next((i for i, name in enumerate(names) if name in required), None)
        starts = [pairs[i] + tails[i + 1] for i in range(len(names) if first is None else first + 1)]
        body = starts[0] if len(starts) == 1 else _alternatives(starts) if starts else b""
        if first is None and starts:
            body = b"(?:" + body + b")?"
        return rb"\{" + _SP + body + _SP + rb"\}"


def _integer(low: Any, high: Any) -> bytes:
    """Integers, or those in [low, high] when bounds are given."""
    if low is None and high is None:
        return _INTEGER
    if isinstance(low, int) and isinstance(high, int) and 0 <= high - low < _MAX_RANGE:
        return _alternatives([str(n).encode() for n in range(low, high + 1)])
    if low == 0 and high is None:
        return rb"(?:0|[1-9][0-9]{0,15})"
    if low == 1 and high is None:
        return rb"[1-9][0-9]{0,15}"
    raise Unsupported("integer bounds other than a small range or a minimum of 0 or 1 are not supported")


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
