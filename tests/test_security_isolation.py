"""Isolation between users when API keys are bound to them: an exhaustive walk over every memory endpoint
(list, search, get by id, history, update, delete, delete-all, create) with every way of naming a scope
(query/body ids, mem0 v2 ``filters`` carrying ids, look-alike ids), for a key bound to one user and a key
bound to two. Key A never sees or changes anything of user B: each answer is a 403/404 or holds none of
B's data, and B's memories and their histories are byte-for-byte unchanged afterwards. Chat with memory
obeys the same binding, and memory ids are random UUIDv4s.

Real parts: the gateway under uvicorn, the real MiniLM embedder and SQLite, the real llama.cpp server
behind a recording proxy (to see exactly which memories reach a prompt).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures_gateway import GatewayServer, RecordingProxy, llama_chat
from mindgate.config import MindgateConfig
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder

KEYS = {"alice": "sk-test-alice-7f3a", "bob": "sk-test-bob-91cc", "team": "sk-test-team-0b2e",
        "admin": "sk-test-admin-55d1"}
CONFIG = {"gateway": {"api_keys": [
    {"name": "alice", "key": KEYS["alice"], "users": ["alice"]},
    {"name": "bob", "key": KEYS["bob"], "users": ["bob"]},
    {"name": "team", "key": KEYS["team"], "users": ["alice", "carol"]},
    {"name": "admin", "key": KEYS["admin"]},
]}}
MARKERS = ("BOBSECRET", "AGENTONLY", "CAROLNOTE")

# every scope an attacker might name, as query parameters or body fields
SCOPES: list[dict[str, str]] = [
    {}, {"user_id": "alice"}, {"user_id": "bob"}, {"user_id": "carol"}, {"user_id": "BOB"}, {"user_id": "bob "},
    {"agent_id": "shared-agent"}, {"run_id": "run-1"}, {"user_id": "bob", "agent_id": "shared-agent"},
    {"user_id": "alice", "agent_id": "shared-agent"}, {"user_id": "bob", "run_id": "run-1"},
    {"user_id": "alice", "run_id": "run-1"},
]
# mem0 v2 filters that carry scope ids (or try to)
FILTERS: list[dict[str, Any]] = [
    {"user_id": "bob"}, {"user_id": {"eq": "bob"}}, {"AND": [{"user_id": "bob"}]}, {"user_id": "carol"},
    {"OR": [{"user_id": "bob"}, {"user_id": "alice"}]}, {"NOT": {"user_id": "alice"}}, {"agent_id": "shared-agent"},
    {"run_id": "run-1"}, {"AND": [{"agent_id": "shared-agent"}, {"user_id": "alice"}]},
]


class Seeded:
    """The memories written by the admin key: ``owned[name]`` are (id, scope) pairs."""

    def __init__(self) -> None:
        self.owned: dict[str, list[tuple[str, dict[str, str]]]] = {}


@pytest.fixture(scope="module")
def proxy(llama_server: Any) -> Iterator[RecordingProxy]:
    recorder = RecordingProxy(f"http://127.0.0.1:{llama_server.port}")
    recorder.start()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="module")
def gateway(proxy: RecordingProxy, minilm: Embedder, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayServer]:
    store = SQLiteStore(tmp_path_factory.mktemp("isolation") / "memory.db")
    memory = AsyncMemory(embedder=minilm, store=store)  # no LLM: background extraction fails fast, harmlessly
    app = create_app(MindgateConfig.from_dict(CONFIG), chat=llama_chat(f"{proxy.base_url}/v1"), memory=memory,
                     embedder=minilm)
    server = GatewayServer(app).start()
    yield server
    server.stop()
    store.close()


def client(gateway: GatewayServer, key: str | None) -> httpx.Client:
    return gateway.http(KEYS[key] if key else None)


@pytest.fixture(scope="module")
def seeded(gateway: GatewayServer) -> Seeded:
    seeds = [
        ("bob", "BOBSECRET-1 my bank pin is 4321 and I drink tea", {"user_id": "bob"}),
        ("bob", "BOBSECRET-2 the shared agent booked my flight to Oslo",
         {"user_id": "bob", "agent_id": "shared-agent"}),
        ("bob", "BOBSECRET-3 during run one I mentioned my tea allergy", {"user_id": "bob", "run_id": "run-1"}),
        ("agent", "AGENTONLY the shared agent's own note about tea", {"agent_id": "shared-agent"}),
        ("run", "AGENTONLY a run-only note about tea", {"run_id": "run-1"}),
        ("carol", "CAROLNOTE carol drinks green tea", {"user_id": "carol"}),
        ("alice", "alice likes black tea with milk", {"user_id": "alice"}),
    ]
    out = Seeded()
    with client(gateway, "admin") as http:
        for owner, text, scope in seeds:
            response = http.post("/v1/memories", json={"messages": text, "infer": False, "metadata": {"k": owner},
                                                        **scope})
            assert response.status_code == 200, response.text
            out.owned.setdefault(owner, []).append((response.json()["results"][0]["id"], scope))
    return out


def others_of(attacker: str) -> list[str]:
    """The owners whose memories ``attacker``'s key must never see or touch."""
    return ["bob", "agent", "run"] + (["carol"] if attacker == "alice" else [])


def snapshot(gateway: GatewayServer, seeded: Seeded, owners: list[str]) -> dict[str, Any]:
    """Everything of these owners, read with the admin key: lists, each memory, each history."""
    state: dict[str, Any] = {}
    with client(gateway, "admin") as http:
        for owner, items in seeded.owned.items():
            if owner not in owners:
                continue
            for memory_id, scope in items:
                state[memory_id] = (http.get(f"/v1/memories/{memory_id}", params=scope).json(),
                                    http.get(f"/v1/memories/{memory_id}/history", params=scope).json())
            for scope in {json.dumps(s, sort_keys=True) for _, s in items}:
                state[f"list {owner} {scope}"] = http.get("/v1/memories", params=json.loads(scope)).json()
    return state


def leaks(response: httpx.Response, protected_ids: list[str], markers: tuple[str, ...]) -> list[str]:
    return [m for m in (*protected_ids, *markers) if m in response.text]


def test_the_walk_covers_every_memory_route(gateway: GatewayServer) -> None:
    routes = {(method.upper(), path) for path, operations in gateway.app.openapi()["paths"].items()
              if path.startswith("/v1/memories") for method in operations}
    assert routes == {("POST", "/v1/memories"), ("GET", "/v1/memories"), ("DELETE", "/v1/memories"),
                      ("POST", "/v1/memories/search"), ("GET", "/v1/memories/{memory_id}"),
                      ("PUT", "/v1/memories/{memory_id}"), ("DELETE", "/v1/memories/{memory_id}"),
                      ("GET", "/v1/memories/{memory_id}/history")}, "a memory route is not covered by this walk"


@pytest.mark.parametrize("attacker", ["alice", "team"])
def test_a_bound_key_cannot_see_or_touch_other_users_memories(gateway: GatewayServer, seeded: Seeded,
                                                              attacker: str) -> None:
    before = snapshot(gateway, seeded, others_of(attacker))
    protected = [item for owner in others_of(attacker) for item in seeded.owned[owner]]
    ids = [memory_id for memory_id, _ in protected]
    markers = MARKERS if attacker == "alice" else ("BOBSECRET", "AGENTONLY")
    answered: dict[int, int] = {}
    problems: list[str] = []

    def check(response: httpx.Response, what: str, *, must_refuse: bool, asked: str = "") -> None:
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            problems.append(f"{what}: {response.status_code} {response.text[:200]}")
        elif must_refuse and response.status_code not in (403, 404):
            problems.append(f"{what}: expected 403/404, got {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400 and response.status_code not in (400, 403, 404):
            problems.append(f"{what}: unexpected {response.status_code}")
        elif found := leaks(response, [i for i in ids if i != asked], markers):  # an error may echo what was asked
            problems.append(f"{what}: leaked {found}")

    with client(gateway, attacker) as http:
        for (memory_id, _), scope in itertools.product(protected, SCOPES):
            where = f"{memory_id} as {scope}"
            check(http.get(f"/v1/memories/{memory_id}", params=scope), f"get {where}", must_refuse=True,
                  asked=memory_id)
            check(http.get(f"/v1/memories/{memory_id}/history", params=scope), f"history {where}", must_refuse=True,
                  asked=memory_id)
            check(http.put(f"/v1/memories/{memory_id}", params=scope, json={"text": "pwned by " + attacker}),
                  f"update {where}", must_refuse=True, asked=memory_id)
            check(http.delete(f"/v1/memories/{memory_id}", params=scope), f"delete {where}", must_refuse=True,
                  asked=memory_id)
        for scope in SCOPES:
            check(http.get("/v1/memories", params=scope), f"list {scope}", must_refuse=False)
            check(http.post("/v1/memories/search", json={"query": "bank pin tea flight Oslo note", **scope}),
                  f"search {scope}", must_refuse=False)
            check(http.post("/v1/memories", json={"messages": f"INJECTED by {attacker}", "infer": False, **scope}),
                  f"create {scope}", must_refuse=False)
            check(http.delete("/v1/memories", params=scope), f"delete-all {scope}", must_refuse=False)
        for flt, scope in itertools.product(FILTERS, [{}, {"user_id": "alice"}]):
            check(http.get("/v1/memories", params={"filters": json.dumps(flt), **scope}), f"list {flt} {scope}",
                  must_refuse=False)
            check(http.post("/v1/memories/search", json={"query": "bank pin tea", "filters": flt, **scope}),
                  f"search {flt} {scope}", must_refuse=False)
    assert problems == [], problems[:20]
    assert answered.get(403, 0) > 0 and answered.get(404, 0) > 0, answered  # both refusals were exercised

    assert snapshot(gateway, seeded, others_of(attacker)) == before, "another user's memories changed"
    with client(gateway, "admin") as http:
        for scope in ({"user_id": "bob"}, {"user_id": "carol"}, {"agent_id": "shared-agent"}, {"run_id": "run-1"}):
            listed = http.get("/v1/memories", params=scope).json()["results"]
            injected = [m for m in listed if "INJECTED" in m["memory"]]
            assert injected == [] or (attacker == "team" and scope == {"user_id": "carol"}), injected


def test_refusals_do_not_reveal_that_a_memory_exists(gateway: GatewayServer, seeded: Seeded) -> None:
    bobs_id = seeded.owned["bob"][0][0]
    with client(gateway, "alice") as http:
        real = http.get(f"/v1/memories/{bobs_id}")
        made_up = http.get(f"/v1/memories/{uuid.uuid4()}")
        real_history = http.get(f"/v1/memories/{bobs_id}/history")
        made_up_history = http.get(f"/v1/memories/{uuid.uuid4()}/history")
    assert real.status_code == made_up.status_code == 404
    assert real.json()["error"]["message"].replace(bobs_id, "X") == \
        made_up.json()["error"]["message"].replace(made_up.url.path.rsplit("/", 1)[1], "X")
    assert real_history.status_code == made_up_history.status_code == 404
    assert real_history.json()["error"]["code"] == made_up_history.json()["error"]["code"]


@pytest.mark.parametrize(("key", "kwargs"), [
    ("alice", {"json_extra": {"user": "bob"}}),
    ("alice", {"headers": {"X-Mindgate-User": "bob"}}),
    ("alice", {"json_extra": {"user": "bob", "memory": False}}),
    ("alice", {"headers": {"X-Mindgate-User": "bob", "X-Mindgate-Memory": "off"}}),
    ("alice", {"json_extra": {"user": "bob", "stream": True}}),
    ("alice", {"json_extra": {"user": "alice"}, "headers": {"X-Mindgate-User": "bob"}}),
    ("team", {}),
    ("team", {"json_extra": {"user": "bob"}}),
], ids=["body-user", "header-user", "memory-off", "header-memory-off", "stream", "header-wins", "team-no-user",
        "team-other-user"])
def test_chat_cannot_act_for_another_user(gateway: GatewayServer, proxy: RecordingProxy, key: str,
                                          kwargs: dict[str, Any]) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "What is my bank pin?"}], "max_tokens": 4,
            **kwargs.get("json_extra", {})}
    sent_before = len(proxy.requests)
    with client(gateway, key) as http:
        response = http.post("/v1/chat/completions", json=body, headers=kwargs.get("headers", {}))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["type"] == "permission_error"
    assert len(proxy.requests) == sent_before, "the refused request reached the model"


def test_chat_injects_only_the_callers_own_memories(gateway: GatewayServer, seeded: Seeded,
                                                    proxy: RecordingProxy) -> None:
    question = [{"role": "user", "content": "What is my bank pin, and what tea do I drink? BOBSECRET CAROLNOTE"}]
    with client(gateway, "alice") as http:  # alice's key acts for alice when no user is named
        assert http.post("/v1/memories", json={"messages": "alice likes black tea with milk", "infer": False}
                         ).status_code == 200
        mine = http.post("/v1/chat/completions", json={"model": "smollm2", "messages": question, "max_tokens": 4})
    assert mine.status_code == 200 and int(mine.headers["x-mindgate-memories"]) >= 1
    prompt = json.dumps(proxy.chat_requests()[-1]["messages"])
    assert "black tea with milk" in prompt and not any(m in prompt.replace("BOBSECRET CAROLNOTE", "")
                                                       for m in MARKERS)
    with client(gateway, "bob") as http:  # the control: bob's key does get bob's memory injected
        theirs = http.post("/v1/chat/completions", json={"model": "smollm2", "messages": question, "max_tokens": 4})
    assert theirs.status_code == 200
    assert "BOBSECRET-1" in json.dumps(proxy.chat_requests()[-1]["messages"])


@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong", "Basic " + KEYS["alice"], "Bearer", KEYS["alice"]])
def test_every_protected_route_needs_a_valid_key(gateway: GatewayServer, seeded: Seeded,
                                                 authorization: str | None) -> None:
    with client(gateway, "admin") as http:
        added = http.post("/v1/memories", json={"messages": "alice's tea note", "user_id": "alice", "infer": False})
    memory_id = added.json()["results"][0]["id"]
    headers = {"Authorization": authorization} if authorization is not None else {}
    calls = [("GET", "/v1/memories", {"params": {"user_id": "alice"}}),
             ("POST", "/v1/memories", {"json": {"messages": "x", "user_id": "alice", "infer": False}}),
             ("DELETE", "/v1/memories", {"params": {"user_id": "alice"}}),
             ("POST", "/v1/memories/search", {"json": {"query": "tea", "user_id": "alice"}}),
             ("GET", f"/v1/memories/{memory_id}", {}), ("PUT", f"/v1/memories/{memory_id}", {"json": {"text": "x"}}),
             ("DELETE", f"/v1/memories/{memory_id}", {}), ("GET", f"/v1/memories/{memory_id}/history", {}),
             ("POST", "/v1/chat/completions", {"json": {"model": "smollm2", "messages": [{"role": "user",
                                                                                          "content": "hi"}]}}),
             ("POST", "/v1/embeddings", {"json": {"model": "minilm", "input": "hi"}}),
             ("GET", "/v1/models", {}), ("GET", "/metrics", {})]
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as http:
        for method, path, kwargs in calls:
            response = http.request(method, path, **kwargs)
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            assert response.json()["error"]["type"] == "authentication_error"
            assert "alice" not in response.text and "tea" not in response.text
    with client(gateway, "admin") as http:
        assert http.get(f"/v1/memories/{memory_id}", params={"user_id": "alice"}).status_code == 200


def test_memory_ids_are_random_uuid4(gateway: GatewayServer) -> None:
    with client(gateway, "admin") as http:
        response = http.post("/v1/memories", json={"messages": [{"role": "user", "content": f"id probe {i}"}
                                                                 for i in range(256)],
                                                    "user_id": "id-prober", "infer": False})
    ids = [r["id"] for r in response.json()["results"]]
    assert len(ids) == len(set(ids)) == 256
    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(u) == i and u.version == 4 and u.variant == uuid.RFC_4122 for u, i in zip(parsed, ids, strict=True))
    # the 122 random bits look random: balanced ones and zeros, no shared prefixes, no order
    random_bits = [(u.int & ~(0xF << 76) & ~(0x3 << 62)) for u in parsed]
    ones = sum(bin(b).count("1") for b in random_bits)
    assert abs(ones / (122 * len(ids)) - 0.5) < 0.02  # 6+ standard deviations of slack
    assert len({i[:8] for i in ids}) > 250
    assert ids != sorted(ids)


def test_the_isolation_gateway_keeps_keys_hashed(gateway: GatewayServer, tmp_path: Path) -> None:
    ring = gateway.app.state.gateway.keys
    assert len(ring) == 4
    dumped = repr(ring.__dict__) + repr(MindgateConfig.from_dict(CONFIG))
    assert not any(key in dumped for key in KEYS.values())
