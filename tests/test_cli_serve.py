"""``mindgate serve`` as the README starts it: the console script on embedded defaults (no config file: the
``auto`` chain, which here falls through to the in-process SmolLM2 engine; MiniLM; SQLite under
MINDGATE_HOME), used by the official SDK and plain HTTP, then stopped with SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from fixtures_servers import free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "MINDGATE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    with log.open("w") as sink:
        process = subprocess.Popen([str(Path(sys.executable).with_name("mindgate")), "serve", "--port", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT, text=True, env=env,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    yield base, process, log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_serve_on_embedded_defaults(served: tuple[str, subprocess.Popen[str], Path]) -> None:
    base, process, log = served
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=300)
    assert "auto" in [m.id for m in client.models.list()]
    answer = client.chat.completions.create(model="auto", max_tokens=12,
                                            messages=[{"role": "user", "content": "Say hello."}])
    assert answer.model == "SmolLM2-135M-Instruct" and answer.choices[0].message.content
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    assert [len(d.embedding) for d in vectors.data] == [384, 384]
    added = httpx.post(f"{base}/v1/memories", json={"messages": "I live in Oslo.", "user_id": "lee",
                                                    "infer": False}, timeout=60)
    assert added.status_code == 200
    found = httpx.post(f"{base}/v1/memories/search", json={"query": "where do I live?", "user_id": "lee"},
                       timeout=60).json()["results"]
    assert found[0]["memory"] == "I live in Oslo."
    assert httpx.get(f"{base}/readyz", timeout=60).json() == {"status": "ready"}

    process.send_signal(signal.SIGINT)  # a graceful stop
    assert process.wait(timeout=180) == 0
    lines = log.read_text().splitlines()
    access = [json.loads(line) for line in lines if line.startswith("{")]
    assert {entry["route"] for entry in access} >= {"/v1/models", "/v1/chat/completions", "/v1/embeddings"}
    assert not any("Say hello" in line or "Oslo" in line for line in lines)  # no contents in the logs
    assert not any("Traceback" in line for line in lines)


def test_serve_refuses_a_public_address_without_the_flag(tmp_path: Path) -> None:
    env = {**os.environ, "MINDGATE_HOME": str(tmp_path)}
    done = subprocess.run([str(Path(sys.executable).with_name("mindgate")), "serve", "--host", "0.0.0.0",
                           "--port", str(free_port())], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "refusing to bind 0.0.0.0" in done.stderr and "--allow-remote" in done.stderr
    assert "Traceback" not in done.stderr


def test_hash_key_prints_the_digest_the_config_takes(tmp_path: Path) -> None:
    from mindgate.gateway._auth import KeyRing, hash_key

    key = "sk-mindgate-0123456789abcdef"
    done = subprocess.run([str(Path(sys.executable).with_name("mindgate")), "hash-key"], input=f"{key}\n{key}\n",
                          capture_output=True, text=True, env={**os.environ, "MINDGATE_HOME": str(tmp_path)},
                          timeout=60)
    assert done.returncode == 0
    digest = done.stdout.strip().rsplit(":", 1)[-1].strip()  # after the (unechoed) prompts
    assert digest == hash_key(key) and key not in done.stdout
    from mindgate.config import MindgateConfig

    ring = KeyRing(MindgateConfig.from_dict({"gateway": {"api_keys": [{"key_sha256": digest}]}}).gateway.api_keys)
    assert ring.authenticate(f"Bearer {key}") is not None
    short = subprocess.run([str(Path(sys.executable).with_name("mindgate")), "hash-key", "--key", "short"],
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "16 characters" in short.stderr
