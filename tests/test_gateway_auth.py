"""API keys (hashed, bound to users and models), rate limits, CORS and the bind policy, through real HTTP
with the official SDK where it applies."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import openai
import pytest

from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MindgateConfig
from mindgate.errors import ConfigurationError
from mindgate.gateway._app import create_app
from mindgate.gateway._auth import KeyRing, hash_key
from mindgate.gateway._limits import TokenBucket
from mindgate.gateway._server import check_bind
from mindgate.memory._memory import AsyncMemory

Serve = Callable[[Any], GatewayServer]
MakeMemory = Callable[..., AsyncMemory]
ADMIN, ALICE, BOB, SLOW = "sk-admin-0001", "sk-alice-0002", "sk-bob-0003", "sk-slow-0004"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def keyed(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> GatewayServer:
    config = MindgateConfig.from_dict({"gateway": {"api_keys": [
        {"name": "admin", "key_sha256": hash_key(ADMIN)},
        {"name": "alice", "key": ALICE, "users": ["alice"], "models": ["smollm2", "text-embedding-3-small"]},
        {"name": "bob", "key": BOB, "users": ["bob"]},
        {"name": "slow", "key": SLOW, "requests_per_minute": 2},
    ]}})
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    return serve_gateway(create_app(config, chat=chat, memory=memory_factory(chat)))


def test_requests_without_a_valid_key_are_401(keyed: GatewayServer) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        keyed.openai(api_key="sk-wrong").models.list()
    assert info.value.status_code == 401 and info.value.body["type"] == "authentication_error"
    with keyed.http() as http:
        missing = http.get("/v1/models")
        assert missing.status_code == 401 and "requires an API key" in missing.json()["error"]["message"]
        assert http.get("/v1/memories", params={"user_id": "bob"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": f"Basic {ADMIN}"}).status_code == 401
        assert http.get("/healthz").status_code == 200  # liveness needs no key
    assert [m.id for m in keyed.openai(api_key=ADMIN).models.list()] == ["auto"]


def test_a_key_bound_to_a_user_cannot_touch_another_users_memories(keyed: GatewayServer) -> None:
    with keyed.http(BOB) as bob:
        made = bob.post("/v1/memories", json={"messages": "I collect stamps.", "infer": False})  # acts for bob
        assert made.status_code == 200
        bobs = made.json()["results"][0]["id"]
    with keyed.http(ALICE) as alice:
        for method, path, kwargs in (("GET", "/v1/memories", {"params": {"user_id": "bob"}}),
                                     ("POST", "/v1/memories", {"json": {"messages": "x", "user_id": "bob"}}),
                                     ("POST", "/v1/memories/search", {"json": {"query": "x", "user_id": "bob"}}),
                                     ("DELETE", "/v1/memories", {"params": {"user_id": "bob"}}),
                                     ("GET", f"/v1/memories/{bobs}", {"params": {"user_id": "bob"}}),
                                     ("PUT", f"/v1/memories/{bobs}", {"params": {"user_id": "bob"},
                                                                      "json": {"text": "hacked"}}),
                                     ("DELETE", f"/v1/memories/{bobs}", {"params": {"agent_id": "x",
                                                                                    "user_id": "bob"}}),
                                     ("GET", f"/v1/memories/{bobs}/history", {"params": {"user_id": "bob"}})):
            response = alice.request(method, path, **kwargs)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["type"] == "permission_error"
        # in her own scope, bob's memory does not exist for her; an agent-only scope is not hers either
        assert alice.get(f"/v1/memories/{bobs}").status_code == 404
        assert alice.get("/v1/memories", params={"agent_id": "helper"}).status_code == 200  # acts as alice+agent
        scoped = alice.get("/v1/memories", params={"user_id": "alice", "filters": '{"user_id": "bob"}'})
        assert scoped.status_code == 400  # a second, different user id hidden in filters is refused
    with keyed.http(ADMIN) as admin:
        assert admin.get(f"/v1/memories/{bobs}").json()["memory"] == "I collect stamps."  # unbound key: any user
    with pytest.raises(openai.PermissionDeniedError) as info:
        keyed.openai(api_key=ALICE).chat.completions.create(model="smollm2", messages=HI, user="bob", max_tokens=2)
    assert "may not act for user 'bob'" in info.value.message
    with pytest.raises(openai.PermissionDeniedError):
        keyed.openai(api_key=ALICE).chat.completions.create(model="smollm2", messages=HI, max_tokens=2,
                                                             extra_headers={"X-Mindgate-User": "bob"})


def test_a_key_bound_to_models(keyed: GatewayServer) -> None:
    client = keyed.openai(api_key=ALICE)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=2)
    assert "may not use model 'gpt-4o'" in info.value.message
    assert client.chat.completions.create(model="smollm2", messages=HI, max_tokens=2).choices
    assert [m.id for m in client.models.list()] == []  # "auto" is not among the key's models


def test_requests_per_minute_gives_429_with_retry_after(keyed: GatewayServer) -> None:
    client = keyed.openai(api_key=SLOW)
    for _ in range(2):
        client.embeddings.create(model="e", input="one")
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model="e", input="one")
    assert info.value.status_code == 429 and int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.body["type"] == "rate_limit_error"
    keyed.openai(api_key=ADMIN).embeddings.create(model="e", input="other keys are not limited")


def test_tokens_per_minute(serve_gateway: Serve, llama_proxy: RecordingProxy, memory_factory: MakeMemory) -> None:
    config = MindgateConfig.from_dict({"gateway": {"api_keys": [{"key": "sk-t", "tokens_per_minute": 20}]}})
    server = serve_gateway(create_app(config, chat=llama_chat(f"{llama_proxy.base_url}/v1"), memory=memory_factory()))
    client = server.openai(api_key="sk-t")
    client.chat.completions.create(model="smollm2", messages=HI, max_tokens=24)  # usage > 20 tokens: in debt
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="smollm2", messages=HI, max_tokens=2)
    assert "20 tokens per minute" in info.value.message
    assert len(llama_proxy.chat_requests()) == 1


def test_token_bucket_refills_over_time() -> None:
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])
    assert bucket.take(60) == 0.0
    assert bucket.take(1) == pytest.approx(1.0)  # one per second
    now[0] += 0.5
    assert bucket.take(1) == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take(1) == 0.0
    bucket.charge(30)
    assert bucket.wait_until_positive() == pytest.approx(31.0)


def test_keys_are_kept_only_as_digests() -> None:
    ring = KeyRing(MindgateConfig.from_dict({"gateway": {"api_keys": [{"key": "sk-plain", "users": ["u"]}]}})
                   .gateway.api_keys)
    assert "sk-plain" not in repr(vars(ring))
    principal = ring.authenticate("Bearer sk-plain")
    assert principal is not None and principal.users == frozenset({"u"})
    with pytest.raises(ConfigurationError, match="repeats another key"):
        KeyRing(MindgateConfig.from_dict({"gateway": {"api_keys": [
            {"key": "same"}, {"key_sha256": hash_key("same")}]}}).gateway.api_keys)


def test_cors_is_off_unless_configured(serve_gateway: Serve, llama_proxy: RecordingProxy,
                                       memory_factory: MakeMemory) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    chat = llama_chat(f"{llama_proxy.base_url}/v1")
    closed = serve_gateway(create_app(MindgateConfig.from_dict({}), chat=chat, memory=memory_factory()))
    with closed.http() as http:
        response = http.options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    config = MindgateConfig.from_dict({"gateway": {"cors_origins": ["https://app.example"]}})
    opened = serve_gateway(create_app(config, chat=chat, memory=memory_factory()))
    with opened.http() as http:
        response = http.options("/v1/chat/completions", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_binding_beyond_loopback_needs_permission_and_warns_without_keys(caplog: pytest.LogCaptureFixture) -> None:
    config = MindgateConfig.from_dict({})
    check_bind(config, "127.0.0.1")
    check_bind(config, "::1")
    check_bind(config, "localhost")
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(ConfigurationError, match="--allow-remote"):
            check_bind(config, host)
    with caplog.at_level(logging.WARNING, logger="mindgate.gateway"):
        check_bind(config, "0.0.0.0", allow_remote=True)
    assert "no API key" in caplog.text
    caplog.clear()
    keyed = MindgateConfig.from_dict({"gateway": {"allow_remote": True, "api_keys": [{"key": "k"}]}})
    with caplog.at_level(logging.WARNING, logger="mindgate.gateway"):
        check_bind(keyed, "0.0.0.0")
    assert caplog.text == ""
