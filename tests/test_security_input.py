"""Bad input over HTTP that schema-driven fuzzing (tests/test_gateway_fuzz.py) does not generate: bodies over
the size limit (declared and chunked), JSON nested too deep, invalid UTF-8, NaN/Infinity, lone surrogate
escapes, integers past 64 bits, control characters in ids, unknown filter operators, SQL- and FTS5-looking
values, path traversal in ids, an embedding server answering NaN. Every answer is a clear OpenAI-shaped 4xx
(5xx only for the broken upstream: 502 naming it), never a hang, and the store passes its integrity and
consistency checks afterwards.

Real parts: the gateway under uvicorn, the real MiniLM embedder and SQLite, the real llama.cpp server.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from fixtures_gateway import GatewayServer, llama_chat
from mindgate.config import MindgateConfig
from mindgate.errors import ProviderError
from mindgate.gateway._app import create_app
from mindgate.memory._memory import AsyncMemory, Memory
from mindgate.memory.stores._sqlite import SQLiteStore
from mindgate.providers._base import Embedder
from mindgate.providers.openai_compat import OpenAICompatClient, OpenAICompatEmbedder
from test_reliability_crash import load_bench

crash = load_bench("crash")
LIMIT = 64 * 1024
JSON = {"content-type": "application/json"}
SQLISH = "'; DROP TABLE memories; --"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-input") / "memory.db"


@pytest.fixture(scope="module")
def gateway(db: Path, llama_server: Any, minilm: Embedder) -> Iterator[GatewayServer]:
    store = SQLiteStore(db)
    config = MindgateConfig.from_dict({"gateway": {"memory": False, "max_body_bytes": LIMIT}})
    app = create_app(config, chat=llama_chat(llama_server.base_url), memory=AsyncMemory(embedder=minilm, store=store),
                     embedder=minilm)
    server = GatewayServer(app).start()
    yield server
    server.stop()
    store.close()


@pytest.fixture
def http(gateway: GatewayServer) -> Iterator[httpx.Client]:
    with gateway.http() as client:
        yield client


def assert_clear_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "internal error" not in error["message"]
    for word in words:
        assert word in error["message"], error["message"]


ROUTES = [("POST", "/v1/memories"), ("POST", "/v1/memories/search"), ("PUT", "/v1/memories/some-id"),
          ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings")]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_body_over_the_limit_is_413(http: httpx.Client, method: str, path: str, chunked: bool) -> None:
    body = json.dumps({"messages": "x" * (LIMIT + 1), "user_id": "big"}).encode()
    content: Any = iter([body[i:i + 8192] for i in range(0, len(body), 8192)]) if chunked else body
    response = http.request(method, path, content=content, headers=JSON)
    assert_clear_error(response, 413, f"limit of {LIMIT} bytes")
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_body_just_under_the_limit_is_served(http: httpx.Client) -> None:
    text = "a long note " * ((LIMIT - 200) // 12)
    response = http.post("/v1/memories", json={"messages": text, "user_id": "big", "infer": False})
    assert response.status_code == 200, response.text
    assert http.get("/v1/memories", params={"user_id": "big"}).json()["results"][0]["memory"] == text


def test_the_default_limit_is_8_mib(minilm: Embedder, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "default.db")
    app = create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}),
                     memory=AsyncMemory(embedder=minilm, store=store), embedder=minilm, warm_up=False)
    server = GatewayServer(app).start()
    try:
        with server.http() as client:
            response = client.post("/v1/memories", content=b" " * (8 * 1024 * 1024 + 1), headers=JSON)
        assert_clear_error(response, 413, f"limit of {8 * 1024 * 1024} bytes")
    finally:
        server.stop()
        store.close()


def _nested(depth: int, inner: str = "1", key: str = "a") -> str:
    return f'{{"{key}":' * depth + inner + "}" * depth


MALFORMED: list[tuple[str, str, str, bytes | dict[str, Any], tuple[str, ...]]] = [
    # (id, method, path, raw body or query params, words the message must hold)
    ("deep-array-body", "POST", "/v1/memories", b'{"messages": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", ()),
    ("deep-metadata", "POST", "/v1/memories",
     ('{"messages": "x", "user_id": "u", "infer": false, "metadata": ' + _nested(40) + "}").encode(),
     ("nested deeper than 32",)),
    ("deep-filter-body", "POST", "/v1/memories/search",
     ('{"query": "x", "user_id": "u", "filters": ' + _nested(20, '{"a": 1}', "NOT") + "}").encode(),
     ("nested deeper than 16",)),
    ("deep-filter-query", "GET", "/v1/memories", {"user_id": "u", "filters": "[" * 5000 + "]" * 5000},
     ("filters",)),
    ("invalid-utf8-memory", "POST", "/v1/memories", b'{"messages": "caf\xe9 \xff\xfe", "user_id": "u"}', ()),
    ("invalid-utf8-chat", "POST", "/v1/chat/completions",
     b'{"model": "smollm2", "messages": [{"role": "user", "content": "\xc3\x28"}]}', ()),
    ("invalid-utf8-embeddings", "POST", "/v1/embeddings", b'{"model": "m", "input": "\xed\xa0\x80"}', ()),
    ("truncated-json", "POST", "/v1/memories", b'{"messages": "x", "user_id": ', ("not valid JSON",)),
    ("array-body", "POST", "/v1/memories/search", b'[{"query": "x"}]', ()),
    ("nan-threshold", "POST", "/v1/memories/search", b'{"query": "x", "user_id": "u", "threshold": NaN}',
     ("threshold",)),
    ("nan-limit", "POST", "/v1/memories/search", b'{"query": "x", "user_id": "u", "limit": NaN}', ("limit",)),
    ("infinity-metadata", "POST", "/v1/memories",
     b'{"messages": "x", "user_id": "u", "infer": false, "metadata": {"a": [1, -Infinity]}}', ("finite",)),
    ("nan-filter-body", "POST", "/v1/memories/search",
     b'{"query": "x", "user_id": "u", "filters": {"score": {"gte": NaN}}}', ("not a finite number",)),
    ("nan-filter-query", "GET", "/v1/memories", {"user_id": "u", "filters": '{"score": NaN}'},
     ("not a finite number",)),
    ("nan-temperature", "POST", "/v1/chat/completions",
     b'{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', ("temperature",)),
    ("infinity-max-tokens", "POST", "/v1/chat/completions",
     b'{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": Infinity}',
     ("max_tokens",)),
    ("huge-int-filter", "POST", "/v1/memories/search",
     b'{"query": "x", "user_id": "u", "filters": {"n": {"in": [1, 123456789012345678901234567890]}}}',
     ("64-bit",)),
    ("surrogate-memory", "POST", "/v1/memories", b'{"messages": "x \\ud800 y", "user_id": "u", "infer": false}',
     ("lone surrogate",)),
    ("surrogate-message-list", "POST", "/v1/memories",
     b'{"messages": [{"role": "user", "content": "\\udfff"}], "user_id": "u", "infer": false}', ("lone surrogate",)),
    ("surrogate-metadata", "POST", "/v1/memories",
     b'{"messages": "x", "user_id": "u", "infer": false, "metadata": {"k": "\\ud83d"}}', ("lone surrogate",)),
    ("surrogate-filter", "POST", "/v1/memories/search",
     b'{"query": "x", "user_id": "u", "filters": {"k": "\\ud83d"}}', ("lone surrogate",)),
    ("surrogate-query", "POST", "/v1/memories/search", b'{"query": "\\ud800", "user_id": "u"}', ()),
    ("surrogate-update", "PUT", "/v1/memories/some-id?user_id=u", b'{"text": "\\ud800"}', ()),
    ("surrogate-chat", "POST", "/v1/chat/completions",
     b'{"model": "smollm2", "messages": [{"role": "user", "content": "hi \\udc00"}]}', ("lone surrogate",)),
    ("surrogate-embeddings", "POST", "/v1/embeddings", b'{"model": "m", "input": ["ok", "\\ud800"]}',
     ("lone surrogate",)),
    ("control-char-user-query", "GET", "/v1/memories", {"user_id": "al\x1fice"}, ("control characters",)),
    ("control-char-user-body", "POST", "/v1/memories", b'{"messages": "x", "user_id": "a\\u0000b", "infer": false}',
     ("control characters",)),
    ("control-char-agent", "POST", "/v1/memories/search", b'{"query": "x", "agent_id": "a\\nb"}',
     ("control characters",)),
    ("op-regex", "POST", "/v1/memories/search", b'{"query": "x", "user_id": "u", "filters": {"k": {"$regex": "."}}}',
     ("unknown filter operator",)),
    ("op-like", "GET", "/v1/memories", {"user_id": "u", "filters": '{"k": {"like": "%"}}'},
     ("unknown filter operator",)),
    ("op-where", "POST", "/v1/memories/search", b'{"query": "x", "user_id": "u", "filters": {"k": {"$where": "1"}}}',
     ("unknown filter operator",)),
    ("op-lowercase-or", "POST", "/v1/memories/search",
     b'{"query": "x", "user_id": "u", "filters": {"$or": [{"a": 1}]}}', ("logical operator",)),
    ("op-and-not-a-list", "POST", "/v1/memories/search", b'{"query": "x", "user_id": "u", "filters": {"AND": "x"}}',
     ("AND takes a non-empty list",)),
    ("field-sql", "GET", "/v1/memories", {"user_id": "u", "filters": json.dumps({"k' OR '1'='1": 1})},
     ("invalid filter field name",)),
    ("field-json-path", "GET", "/v1/memories", {"user_id": "u", "filters": json.dumps({'a"].b': 1})},
     ("invalid filter field name",)),
    ("field-empty", "GET", "/v1/memories", {"user_id": "u", "filters": '{"": 1}'}, ("invalid filter field name",)),
    ("text-plain", "POST", "/v1/memories", b'{"messages": "x", "user_id": "u"}', ()),
]


@pytest.mark.parametrize(("method", "path", "body", "words"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_a_clear_400(http: httpx.Client, method: str, path: str, body: bytes | dict[str, Any],
                                        words: tuple[str, ...], request: pytest.FixtureRequest) -> None:
    case = request.node.callspec.id
    if isinstance(body, dict):
        response = http.request(method, path, params=body)
    else:
        headers = {"content-type": "text/plain"} if case == "text-plain" else dict(JSON)
        response = http.request(method, path, content=body, headers=headers)
    assert_clear_error(response, 400, *words)


def test_a_malformed_content_length_is_a_400(gateway: GatewayServer) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 12abc\r\nConnection: close\r\n\r\n{}")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status = int(raw.split(b" ", 2)[1])
    assert 400 <= status < 500, raw[:300]  # refused by the HTTP parser or by the body limit, never served


def test_sql_looking_values_are_plain_data(http: httpx.Client, db: Path) -> None:
    user = "robert'); DROP TABLE memories;--"
    added = http.post("/v1/memories", json={"messages": SQLISH, "user_id": user, "infer": False,
                                            "metadata": {"note": "1' OR '1'='1", "n": 1}})
    assert added.status_code == 200, added.text
    memory_id = added.json()["results"][0]["id"]
    http.post("/v1/memories", json={"messages": "an ordinary memory", "user_id": user, "infer": False})

    listed = http.get("/v1/memories", params={"user_id": user}).json()["results"]
    assert {m["memory"] for m in listed} == {SQLISH, "an ordinary memory"}
    found = http.post("/v1/memories/search", json={"query": "DROP TABLE memories", "user_id": user}).json()
    assert found["results"][0]["id"] == memory_id
    exact = http.get("/v1/memories", params={"user_id": user, "filters": json.dumps({"note": "1' OR '1'='1"})})
    assert [m["id"] for m in exact.json()["results"]] == [memory_id]
    for value in ("' OR 1=1 --", "1' OR '1'='1' --", "%", "*"):
        none = http.get("/v1/memories", params={"user_id": user, "filters": json.dumps({"note": value})})
        assert none.status_code == 200 and none.json()["results"] == [], value
    assert http.get("/v1/memories", params={"user_id": "' OR '1'='1"}).json()["results"] == []
    for bad_id in ("1' OR '1'='1", "x'; DELETE FROM memories; --", "* ", "%"):
        assert http.get(f"/v1/memories/{bad_id}", params={"user_id": user}).status_code == 404
        assert http.delete(f"/v1/memories/{bad_id}", params={"user_id": user}).status_code == 404
    assert len(http.get("/v1/memories", params={"user_id": user}).json()["results"]) == 2

    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"memories", "history", "vector_spaces", "memories_fts"} <= tables
        assert conn.execute("SELECT memory FROM memories WHERE id = ?", (memory_id,)).fetchall() == [(SQLISH,)]
    finally:
        conn.close()


@pytest.mark.parametrize("query", ['"', 'NEAR(a b)', "*", "memory: x", "part : p1", "AND OR NOT", "^tea", "a -b",
                                   "(((", "tea*", '"unterminated', "\x00", "🙂 ☕", "x" * 10_000])
def test_full_text_syntax_in_a_query_is_plain_text(http: httpx.Client, query: str) -> None:
    http.post("/v1/memories", json={"messages": "I drink tea at noon", "user_id": "fts", "infer": False})
    response = http.post("/v1/memories/search", json={"query": query, "user_id": "fts"})
    assert response.status_code == 200, response.text
    assert all(m["user_id"] == "fts" for m in response.json()["results"])


@pytest.mark.parametrize("memory_id", ["..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "....//....//x",
                                       "..%5C..%5Cwindows", "%00", "a%0d%0aSet-Cookie:%20x=1"])
def test_path_traversal_in_ids_is_only_a_missing_memory(http: httpx.Client, memory_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = http.request(method, f"/v1/memories/{memory_id}", params={"user_id": "u"})
        assert response.status_code == 404, response.text
        assert "set-cookie" not in response.headers
    history = http.get(f"/v1/memories/{memory_id}/history", params={"user_id": "u"})
    assert history.status_code == 404


def test_the_store_is_intact_after_all_the_bad_input(gateway: GatewayServer, db: Path) -> None:
    problems, rows, _ = crash.store_problems(db)
    assert problems == []
    assert len(rows) >= 3  # the memories the tests above stored
    with gateway.http() as client:
        assert client.get("/readyz").status_code == 200


class _BadEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible embeddings endpoint whose vectors hold NaN/Infinity (a broken model server;
    Python's JSON parser, like many, accepts those literals)."""

    def do_POST(self) -> None:
        count = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["input"])
        row = "[" + ", ".join(["0.5", "NaN", "Infinity"] * 4) + "]"
        body = ('{"object": "list", "model": "broken", "data": ['
                + ", ".join(f'{{"object": "embedding", "index": {i}, "embedding": {row}}}' for i in range(count))
                + "]}").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_an_embedder_returning_nan_is_an_upstream_error_and_stores_nothing(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadEmbeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    embedder = OpenAICompatEmbedder(OpenAICompatClient(f"http://127.0.0.1:{server.server_port}/v1"), "broken")
    store = SQLiteStore(tmp_path / "nan.db")
    app = create_app(MindgateConfig.from_dict({"gateway": {"memory": False}}),
                     memory=AsyncMemory(embedder=embedder, store=store), embedder=embedder, warm_up=False)
    gateway = GatewayServer(app).start()
    try:
        with gateway.http() as client:
            added = client.post("/v1/memories", json={"messages": "I like tea", "user_id": "u", "infer": False})
            assert_clear_error(added, 502, "NaN or infinity", "broken")
            embedded = client.post("/v1/embeddings", json={"model": "broken", "input": "hi"})
            assert_clear_error(embedded, 502, "NaN or infinity")  # never NaN in a JSON answer
        with pytest.raises(ProviderError, match="NaN or infinity"):
            Memory(AsyncMemory(embedder=embedder, store=store)).add("I like tea", user_id="u", infer=False)
    finally:
        gateway.stop()
        server.shutdown()
        server.server_close()
    conn = apsw.Connection(str(tmp_path / "nan.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("SELECT count(*) FROM memories").fetchall() == [(0,)]
    finally:
        conn.close()
    store.close()
