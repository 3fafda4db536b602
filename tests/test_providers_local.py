"""The in-process engine for real: llama.cpp on the shipped SmolLM2 GGUF and sentence-transformers on the shipped
MiniLM. Format-level assertions only (never what a 135M model says)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import regex
from pydantic import BaseModel, Field

from mindgate._sync import run_sync
from mindgate.errors import ConfigurationError, ContextOverflowError
from mindgate.providers import create_chat_model, create_embedder
from mindgate.providers._json_constraint import SchemaConstraint, Unsupported, schema_regex
from mindgate.providers._structured import complete_json, learned_mode
from mindgate.providers.local import LlamaCppChatModel, SentenceTransformerEmbedder

MESSAGES = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_complete(smollm: LlamaCppChatModel) -> None:
    response = smollm.complete(MESSAGES, max_tokens=8, temperature=0)
    assert isinstance(response.content, str) and response.content
    assert response.finish_reason in {"stop", "length"}
    assert 0 < response.usage.completion_tokens <= 8
    assert response.model == "SmolLM2-135M-Instruct" and response.raw["object"] == "chat.completion"


def test_stream(smollm: LlamaCppChatModel) -> None:
    chunks = list(smollm.stream(MESSAGES, max_tokens=8, temperature=0))
    assert "".join(c.content or "" for c in chunks)
    assert chunks[-1].finish_reason in {"stop", "length"}
    assert all(c.raw["object"] == "chat.completion.chunk" for c in chunks)


def test_json_object_output_parses(smollm: LlamaCppChatModel) -> None:
    # json_object as _structured.py sends it: with a schema, which llama.cpp turns into a grammar
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    response = smollm.complete([{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
                               response_format={"type": "json_object", "schema": schema}, max_tokens=40,
                               temperature=0)
    assert response.finish_reason == "stop"
    assert isinstance(json.loads(response.content or "")["ok"], bool)


def test_structured_output_with_a_schema(smollm: LlamaCppChatModel) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
              "required": ["city", "sunny"]}
    result = run_sync(complete_json(smollm, [{"role": "user", "content": "Describe Paris weather."}], schema,
                                    max_tokens=60, temperature=0))
    assert isinstance(result["city"], str) and isinstance(result["sunny"], bool)
    assert learned_mode(smollm.endpoint_key) == "json_schema"


def test_forced_tool_call(smollm: LlamaCppChatModel) -> None:
    response = smollm.complete([{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER_TOOL],
                               tool_choice={"type": "function", "function": {"name": "get_weather"}},
                               max_tokens=40, temperature=0)
    [call] = response.tool_calls
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_count_tokens_uses_the_model_tokenizer(smollm: LlamaCppChatModel) -> None:
    short = smollm.count_tokens([{"role": "user", "content": "hi"}])
    long = smollm.count_tokens([{"role": "user", "content": "hi " * 50}])
    assert short is not None and long is not None and 0 < short < long
    assert long - short >= 45


def test_context_overflow_is_a_clear_error() -> None:
    small = LlamaCppChatModel(n_ctx=128, n_threads=1)
    try:
        with pytest.raises(ContextOverflowError) as info:
            small.complete([{"role": "user", "content": "word " * 400}], max_tokens=4)
        assert info.value.available == 128 and "n_ctx" in str(info.value)
    finally:
        small.close()


def test_registry_builds_the_local_engine_and_rejects_a_missing_file(tmp_path: Path) -> None:
    model = create_chat_model("local", dict(n_ctx=512, n_threads=1, temperature=0.3))
    assert isinstance(model, LlamaCppChatModel) and model.context_length == 512
    assert model.defaults == {"temperature": 0.3}
    with pytest.raises(ConfigurationError, match="GGUF model file not found"):
        create_chat_model("local", dict(model_path=str(tmp_path / "missing.gguf")))


def test_embedder_shapes_dims_and_batch_order(minilm: SentenceTransformerEmbedder) -> None:
    texts = ["first sentence", "a second, longer sentence about cats", "third", "fourth one here"]
    batch = minilm.embed_batch(texts)
    assert batch.shape == (4, 384) and batch.dtype == np.float32
    singles = np.stack([minilm.embed(t) for t in texts])
    assert np.allclose(batch, singles, atol=1e-5)
    assert minilm.embed("x").shape == (384,)
    assert minilm.dims() == 384
    assert np.allclose(run_sync(minilm.aembed_batch(texts)), batch, atol=1e-5)
    assert minilm.embed_batch([]).shape == (0, 384)


def test_embedder_small_batches_keep_order(minilm: SentenceTransformerEmbedder) -> None:
    texts = [f"sentence number {i}" for i in range(7)]
    small = SentenceTransformerEmbedder(batch_size=2)
    small._st = minilm._st  # same loaded weights, different batching
    assert np.allclose(small.embed_batch(texts), minilm.embed_batch(texts), atol=1e-5)


def test_embedder_rejects_non_strings(minilm: SentenceTransformerEmbedder) -> None:
    with pytest.raises(ConfigurationError, match="embedding input 1 is int, not a string"):
        minilm.embed_batch(["ok", 42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of strings"):
        minilm.embed_batch("not a list")


def test_embedder_dims_mismatch(minilm: SentenceTransformerEmbedder, caplog: pytest.LogCaptureFixture) -> None:
    emb = create_embedder("local", dict(embedding_dims=1536))
    assert isinstance(emb, SentenceTransformerEmbedder)
    emb._st = minilm._st
    assert emb.embed("x").shape == (384,)  # the probe wins; the store checks its own recorded size
    assert "returns 384-dimensional vectors but embedding_dims is set to 1536" in caplog.text


def test_bounded_schema_regex_accepts_exactly_the_valid_texts() -> None:
    schema = {"type": "object", "required": ["memory"], "properties": {"memory": {
        "type": "array", "maxItems": 2, "items": {
            "type": "object", "required": ["event", "text"],
            "properties": {"event": {"type": "string", "enum": ["ADD", "NONE"]},
                           "id": {"type": "integer", "enum": [0, 1]},
                           "text": {"type": "string", "minLength": 1, "maxLength": 5}}}}}}
    pattern = regex.compile(schema_regex(schema))
    assert pattern.fullmatch(b'{"memory": []}') and pattern.fullmatch(b'{"memory":[{"event":"ADD","text":"ab"}]}')
    assert pattern.fullmatch(b'{"memory": [{"event": "NONE", "id": 1, "text": "x"}, {"event": "ADD", "text": "y"}]}')
    for bad in (b'{"memory": [{"event": "DELETE", "text": "x"}]}', b'{"memory": [{"event": "ADD", "text": "abcdef"}]}',
                b'{"memory": [{"event": "ADD", "id": 2, "text": "x"}]}', b'{"memory": [{"event": "ADD"}]}',
                b'{"memory": [' + b", ".join([b'{"event": "ADD", "text": "x"}'] * 3) + b"]}"):
        assert pattern.fullmatch(bad) is None, bad
    assert pattern.fullmatch(b'{"memory": [{"event": "AD', partial=True)  # a prefix is still viable
    with pytest.raises(Unsupported):
        schema_regex({"type": "string"})  # unbounded: llama.cpp's grammar is used instead


class _Where(BaseModel):
    kind: Literal["city"]
    name: str = Field(max_length=8)


class _Pydantic(BaseModel):
    """What pydantic emits: $defs/$ref, anyOf with null, const, titles, an optional first property."""
    note: str | None = Field(default=None, max_length=4)
    place: _Where
    rank: int | None = Field(default=None, ge=1, le=3)
    tags: list[Literal["a", "b"]] = Field(default_factory=list, max_length=2)


def test_schema_regex_follows_what_pydantic_emits() -> None:
    schema = _Pydantic.model_json_schema()
    assert "$defs" in schema and "anyOf" in schema["properties"]["note"]  # the shapes under test
    pattern = regex.compile(schema_regex(schema))
    good = [b'{"place": {"kind": "city", "name": "Oslo"}}', b'{"note":null,"place":{"kind":"city","name":""}}',
            b'{"note": "hi", "place": {"kind": "city", "name": "Rome"}, "rank": 3, "tags": ["a", "b"]}',
            b'{"place": {"kind": "city", "name": "x"}, "rank": null, "tags": []}', b'{"note":"x","place":'
            b'{"kind":"city","name":"y"},"tags":["b"]}']
    for text in good:
        assert pattern.fullmatch(text), text
        _Pydantic.model_validate_json(text)  # every match is valid for the model itself
    for bad in (b'{"note": "hi"}', b'{"place": {"kind": "town", "name": "x"}}', b'{"note": "toolong",'
                b' "place": {"kind": "city", "name": "x"}}', b'{"place": {"kind": "city", "name": "x"}, "rank": 4}',
                b'{"place": {"kind": "city", "name": "x"}, "tags": ["a", "b", "a"]}', b'{}'):
        assert pattern.fullmatch(bad) is None, bad
    assert regex.fullmatch(schema_regex({"type": "object", "properties": {"a": {"type": "integer"}}}), b"{}")
    assert regex.fullmatch(schema_regex({"type": ["string", "null"], "maxLength": 2}), b"null")
    assert regex.fullmatch(schema_regex({"type": "integer", "minimum": 0}), b"-1") is None


class _Tree(BaseModel):
    label: str = Field(max_length=4)
    children: list[_Tree] = Field(default_factory=list, max_length=2)


@pytest.mark.parametrize("schema", [
    _Tree.model_json_schema(),  # recursive $ref: llama.cpp's grammar takes it
    {"type": "string", "maxLength": 9, "pattern": "^a"},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]},
    {"type": "object", "additionalProperties": {"type": "integer"}},  # free-form
    {"$ref": "#/$defs/Missing"},
    {"type": "integer", "exclusiveMinimum": 0},
], ids=["recursive", "pattern", "required-unknown", "free-form", "dangling-ref", "unknown-keyword"])
def test_schema_regex_refuses_what_it_cannot_bound(schema: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        schema_regex(schema)


def test_a_pydantic_schema_is_answered_through_the_fast_constraint(smollm: LlamaCppChatModel) -> None:
    schema = _Pydantic.model_json_schema()
    with smollm._llama() as llama:  # the greedy constraint takes it (no fallback to llama.cpp's grammar)
        kwargs = smollm._fast_constraint(llama, smollm._kwargs({"temperature": 0, "response_format": {
            "type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}))
    assert isinstance(kwargs["logits_processor"][0], SchemaConstraint) and "response_format" not in kwargs
    answer = run_sync(complete_json(smollm, [{"role": "user", "content": "Name a city as JSON."}], schema,
                                    validate=_Pydantic.model_validate, max_tokens=80, temperature=0))
    assert isinstance(answer, _Pydantic) and answer.place.kind == "city" and len(answer.place.name) <= 8


def test_greedy_schema_constraint_bounds_the_real_model(smollm: LlamaCppChatModel) -> None:
    schema = {"type": "object", "required": ["items"], "properties": {"items": {
        "type": "array", "maxItems": 2, "items": {"type": "string", "minLength": 1, "maxLength": 12}}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
    prompt = [{"role": "user", "content": "List three fruits as JSON {\"items\": [...]}."}]
    reply = run_sync(smollm.acomplete(prompt, response_format=fmt, temperature=0, max_tokens=80))
    parsed = json.loads(reply.content or "")
    assert reply.finish_reason == "stop" and set(parsed) == {"items"}
    assert 0 <= len(parsed["items"]) <= 2 and all(0 < len(i.encode()) <= 12 for i in parsed["items"])
