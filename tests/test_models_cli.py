"""`mindgate models ...` and `mindgate doctor` through typer's CliRunner, against the contract fakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from fakes import LMStudioFake, OllamaFake
from fixtures_servers import free_port
from mindgate.config import mindgate_home
from mindgate.models._commands import app, doctor
from mindgate.models._decisions import FILE_NAME as DECISIONS_FILE
from mindgate.models._decisions import DecisionLog

root = typer.Typer()
root.add_typer(app, name="models")
root.command()(doctor)
runner = CliRunner()


def write_config(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "mindgate.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def config(tmp_path: Path, lmstudio_fake: LMStudioFake, ollama_fake: OllamaFake) -> str:
    return write_config(tmp_path, {
        "llm": {"provider": "lmstudio", "config": {"model": "qwen2.5-7b-instruct",
                                                   "lmstudio_base_url": f"{lmstudio_fake.base_url}/v1"}},
        "embedder": {"provider": "lmstudio", "config": {"model": "text-embedding-nomic-embed-text-v1.5",
                                                        "lmstudio_base_url": f"{lmstudio_fake.base_url}/v1"}},
        "providers": {"home": {"provider": "ollama", "config": {"ollama_base_url": ollama_fake.base_url}}},
    })


def run(*args: str) -> Any:
    return runner.invoke(root, list(args))


def test_list_table_and_json(config: str) -> None:
    table = run("models", "list", "-c", config)
    assert table.exit_code == 0, table.output
    assert "qwen2.5-7b-instruct" in table.output and "llama3.2:latest" in table.output
    assert "lmstudio /api/v1/models" in table.output
    data = json.loads(run("models", "list", "--json", "-c", config).output)
    assert {s["endpoint"] for s in data["endpoints"]} == {"home", "lmstudio"}
    nomic = next(m for m in data["models"] if m["id"] == "nomic-embed-text:latest")
    assert nomic["type"] == "embedding" and nomic["max_context_length"] == 2048 and nomic["endpoint"] == "home"


def test_load_ps_unload_cycle(config: str, lmstudio_fake: LMStudioFake) -> None:
    loaded = run("models", "load", "qwen2.5-7b-instruct", "--ttl", "600", "--context-length", "8192", "-c", config)
    assert loaded.exit_code == 0, loaded.output
    assert "lmstudio:qwen2.5-7b-instruct loaded in" in loaded.output and "context 8192, ttl 600s" in loaded.output
    assert "memory estimate:" in loaded.output
    assert lmstudio_fake.requests_to("/api/v1/models/load")[0].json["ttl"] == 600
    again = run("models", "load", "qwen2.5-7b-instruct", "-c", config)
    assert "already loaded as qwen2.5-7b-instruct" in again.output
    ps = run("models", "ps", "-c", config)
    assert ps.exit_code == 0 and "qwen2.5-7b-instruct" in ps.output and "8192" in ps.output
    unloaded = run("models", "unload", "qwen2.5-7b-instruct", "-c", config)
    assert unloaded.exit_code == 0 and "unloaded qwen2.5-7b-instruct" in unloaded.output
    assert "no models are loaded" in run("models", "ps", "-c", config).output
    assert len(lmstudio_fake.requests_to("/api/v1/models/load")) == 1


def test_load_on_a_named_endpoint(config: str, ollama_fake: OllamaFake) -> None:
    result = run("models", "load", "llama3.2", "--endpoint", "home", "-c", config)
    assert result.exit_code == 0, result.output
    assert "home:llama3.2:latest loaded" in result.output and "llama3.2:latest" in ollama_fake.loaded


def test_errors_exit_1_with_message_and_hint(config: str) -> None:
    missing = run("models", "load", "qwen2.5-7b-instrct", "-c", config)
    assert missing.exit_code == 1
    assert "error: no model 'qwen2.5-7b-instrct' on any endpoint" in missing.output
    assert "hint: did you mean qwen2.5-7b-instruct, " in missing.output
    bad_endpoint = run("models", "unload", "x", "--endpoint", "nowhere", "-c", config)
    assert bad_endpoint.exit_code == 1 and "no endpoint named 'nowhere'" in bad_endpoint.output


def test_doctor_reports_providers_resources_and_embedder(config: str) -> None:
    result = run("doctor", "-c", config)
    assert result.exit_code == 0, result.output
    assert "providers" in result.output and "/api/v1/models" in result.output
    assert "RAM" in result.output and "free of" in result.output
    assert "GPU status" in result.output  # says where VRAM figures come from, or why there are none
    assert "no switching decisions recorded yet" in result.output
    assert "embedder: lmstudio:text-embedding-nomic-embed-text-v1.5 -> 768 dims" in result.output
    assert "no problems found" in result.output


def test_doctor_shows_the_gateways_last_switching_decisions(config: str) -> None:
    log = DecisionLog(path=mindgate_home() / DECISIONS_FILE)
    log.record("sized", "small", "tier-down", "tier 2 of 2 (1.0 GiB free, needs 512.0 MiB)")
    log.record("sized", "big", "skip", "smol@ctx8192 does not fit: needs 351.0 MiB, 225.0 MiB free")
    result = run("doctor", "-c", config, "--no-probe-embedder")
    assert result.exit_code == 0, result.output
    assert "last switching decisions" in result.output
    assert result.output.index("does not fit") < result.output.index("tier-down")  # newest first


def test_doctor_flags_config_problems(tmp_path: Path, lmstudio_fake: LMStudioFake) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, {
        "llm": {"provider": "ollama", "config": {"model": "llama3.2", "ollama_base_url": dead}},
        "embedder": {"provider": "lmstudio", "config": {"model": "text-embedding-nomic-embed-text-v1.5",
                                                        "embedding_dims": 1536,
                                                        "lmstudio_base_url": f"{lmstudio_fake.base_url}/v1"}},
    })
    result = run("doctor", "-c", config)
    assert result.exit_code == 1
    assert "the configured llm provider is unreachable" in result.output
    assert "768" in result.output and "1536" in result.output  # probed dims vs the configured ones
    broken = tmp_path / "broken.yaml"
    broken.write_text("llm: {provider: nope}\n")
    invalid = run("doctor", "-c", str(broken))
    assert invalid.exit_code == 1 and "invalid configuration" in invalid.output and "RAM" in invalid.output
