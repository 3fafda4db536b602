"""The contract fakes behave as the vendors document (other tests and other engineers rely on this)."""

from __future__ import annotations

import json

import httpx
import pytest

from fakes import LMStudioFake, OllamaFake
from fakes._openai import hash_embedding


def test_lmstudio_v1_listing_shape(lmstudio_fake: LMStudioFake) -> None:
    lmstudio_fake.load_instance("qwen2.5-7b-instruct", context_length=8192)
    models = httpx.get(f"{lmstudio_fake.base_url}/api/v1/models").json()["models"]
    qwen = next(m for m in models if m["key"] == "qwen2.5-7b-instruct")
    assert qwen["loaded_instances"] == [{"id": "qwen2.5-7b-instruct", "config": {"context_length": 8192}}]
    assert qwen["quantization"] == {"name": "Q4_K_M", "bits_per_weight": 4}
    assert qwen["capabilities"] == {"vision": False, "trained_for_tool_use": True}
    embedder = next(m for m in models if m["type"] == "embedding")
    assert "capabilities" not in embedder and "architecture" not in embedder


def test_lmstudio_load_twice_creates_duplicate_instance(lmstudio_fake: LMStudioFake) -> None:
    url = f"{lmstudio_fake.base_url}/api/v1/models/load"
    first = httpx.post(url, json={"model": "qwen2.5-7b-instruct", "echo_load_config": True}).json()
    second = httpx.post(url, json={"model": "qwen2.5-7b-instruct"}).json()
    assert first["instance_id"] == "qwen2.5-7b-instruct" and first["status"] == "loaded"
    assert first["load_config"]["context_length"] == 4096
    assert second["instance_id"] == "qwen2.5-7b-instruct:2"
    ids = [m["id"] for m in httpx.get(f"{lmstudio_fake.base_url}/v1/models").json()["data"]]
    assert "qwen2.5-7b-instruct:2" in ids


def test_lmstudio_unknown_endpoint_answers_200_with_error() -> None:
    with LMStudioFake(api_versions=("v0",)) as fake:
        response = httpx.get(f"{fake.base_url}/api/v1/models")
    assert response.status_code == 200
    assert response.json() == {"error": "Unexpected endpoint or method. (GET /api/v1/models)"}


def test_lmstudio_quirks_json_object_token_arrays_no_models_loaded() -> None:
    with LMStudioFake(jit=False) as fake:
        chat = {"model": "qwen2.5-7b-instruct", "messages": [{"role": "user", "content": "hi"}]}
        rejected = httpx.post(f"{fake.base_url}/v1/chat/completions",
                              json={**chat, "response_format": {"type": "json_object"}})
        assert rejected.status_code == 400
        assert rejected.json() == {"error": "'response_format.type' must be 'json_schema' or 'text'"}
        no_model = httpx.post(f"{fake.base_url}/v1/chat/completions", json=chat)
        assert no_model.status_code == 400
        assert no_model.json()["error"]["message"].startswith("No models loaded.")
        tokens = httpx.post(f"{fake.base_url}/v1/embeddings",
                            json={"model": "text-embedding-nomic-embed-text-v1.5", "input": [[1, 2, 3]]})
        assert tokens.status_code == 400
        assert tokens.json() == {"error": "'input' field must be a string or an array of strings"}


def test_lmstudio_jit_load_with_ttl_and_suffixed_ids(lmstudio_fake: LMStudioFake) -> None:
    response = httpx.post(f"{lmstudio_fake.base_url}/v1/chat/completions",
                          json={"model": "llama-3.2-1b-instruct", "ttl": 30,
                                "messages": [{"role": "user", "content": "hello there"}]}).json()
    assert response["model"] == "llama-3.2-1b-instruct@q4_k_m"
    assert response["choices"][0]["message"]["content"] == "echo: hello there"
    [instance] = lmstudio_fake.loaded
    assert instance.jit and instance.ttl == 30


def test_lmstudio_sse_stream_and_embeddings_are_deterministic(lmstudio_fake: LMStudioFake) -> None:
    body = {"model": "qwen2.5-7b-instruct", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "one two"}]}
    with httpx.stream("POST", f"{lmstudio_fake.base_url}/v1/chat/completions", json=body) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: one two"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    emb = httpx.post(f"{lmstudio_fake.base_url}/v1/embeddings",
                     json={"model": "text-embedding-nomic-embed-text-v1.5", "input": ["a", "b"]}).json()
    assert [d["embedding"] for d in emb["data"]] == [hash_embedding("a", 768), hash_embedding("b", 768)]


def test_lmstudio_json_schema_answer_matches_schema(lmstudio_fake: LMStudioFake) -> None:
    schema = {"type": "object", "properties": {"facts": {"type": "array", "items": {"type": "string"}},
                                               "ok": {"type": "boolean"}}, "required": ["facts", "ok"]}
    response = httpx.post(f"{lmstudio_fake.base_url}/v1/chat/completions", json={
        "model": "qwen2.5-7b-instruct", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}).json()
    assert json.loads(response["choices"][0]["message"]["content"]) == {"facts": [], "ok": False}


def test_ollama_native_shapes_and_not_found(ollama_fake: OllamaFake) -> None:
    missing = httpx.post(f"{ollama_fake.base_url}/api/show", json={"model": "x"})
    assert missing.status_code == 404 and missing.json() == {"error": "model 'x' not found"}
    show = httpx.post(f"{ollama_fake.base_url}/api/show", json={"model": "llama3.2"}).json()
    assert show["model_info"]["llama.context_length"] == 131072
    assert show["capabilities"] == ["completion", "tools"]
    loaded = httpx.post(f"{ollama_fake.base_url}/api/generate",
                        json={"model": "llama3.2", "keep_alive": "10m", "options": {"num_ctx": 8192}}).json()
    assert loaded["done"] and loaded["done_reason"] == "load"
    [running] = httpx.get(f"{ollama_fake.base_url}/api/ps").json()["models"]
    assert running["name"] == "llama3.2:latest" and running["context_length"] == 8192
    unloaded = httpx.post(f"{ollama_fake.base_url}/api/generate", json={"model": "llama3.2", "keep_alive": 0})
    assert unloaded.json()["done_reason"] == "unload"
    assert httpx.get(f"{ollama_fake.base_url}/api/ps").json()["models"] == []


def test_ollama_openai_surface(ollama_fake: OllamaFake) -> None:
    missing = httpx.post(f"{ollama_fake.base_url}/v1/chat/completions",
                         json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == 'model "nope" not found, try pulling it first'
    ollama_fake.reply = "fixed answer"
    ok = httpx.post(f"{ollama_fake.base_url}/v1/chat/completions",
                    json={"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert ok["choices"][0]["message"]["content"] == "fixed answer"
    ids = [m["id"] for m in httpx.get(f"{ollama_fake.base_url}/v1/models").json()["data"]]
    assert ids == ["llama3.2:latest", "qwen2.5:7b", "llava:7b", "nomic-embed-text:latest"]


@pytest.mark.parametrize("value,seconds", [("5m", 300.0), ("30s", 30.0), (-1, None), ("1h30m", 5400.0), (0, 0.0)])
def test_ollama_keep_alive_forms(value: object, seconds: float | None) -> None:
    from fakes.ollama import parse_keep_alive

    assert parse_keep_alive(value) == seconds


def test_requests_are_recorded(ollama_fake: OllamaFake) -> None:
    httpx.post(f"{ollama_fake.base_url}/api/generate", json={"model": "llama3.2"})
    [request] = ollama_fake.requests_to("/api/generate")
    assert request.method == "POST" and request.json == {"model": "llama3.2"}
