"""Configuration: mem0-shaped dicts, YAML files, environment overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindgate import ConfigurationError, MindgateConfig
from mindgate.config import PgVectorStoreConfig, SQLiteStoreConfig


def test_defaults_are_the_embedded_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDGATE_HOME", str(tmp_path))
    cfg = MindgateConfig.from_dict({})
    assert cfg.llm.provider == "auto"
    assert cfg.embedder.provider == "local"
    assert cfg.vector_store.provider == "sqlite"
    assert isinstance(cfg.vector_store.config, SQLiteStoreConfig)
    assert cfg.vector_store.config.resolved_path() == tmp_path / "memory.db"
    assert cfg.gateway.host == "127.0.0.1"
    assert cfg.gateway.allow_remote is False


def test_mem0_lmstudio_config_is_accepted_unchanged() -> None:
    cfg = MindgateConfig.from_dict({
        "embedder": {"provider": "lmstudio", "config": {"model": "text-embedding-nomic-embed-text-v1.5"}},
        "llm": {"provider": "lmstudio", "config": {"model": "qwen2.5-7b-instruct", "temperature": 0.1,
                                                    "max_tokens": 2000, "lmstudio_base_url": "http://host:1234/v1"}},
        "vector_store": {"provider": "sqlite", "config": {"path": "~/.mindgate/memory.db"}},
        "version": "v1.1",
        "custom_fact_extraction_prompt": "Only remember food preferences.",
    })
    assert cfg.llm.config.base_url_for("lmstudio") == "http://host:1234/v1"
    assert cfg.llm.config.max_tokens == 2000
    assert cfg.memory.custom_instructions == "Only remember food preferences."
    assert str(cfg.vector_store.config.resolved_path()).endswith(".mindgate/memory.db")


def test_pgvector_section_takes_its_own_keys() -> None:
    cfg = MindgateConfig.from_dict({"vector_store": {"provider": "pgvector",
                                                     "config": {"dsn": "postgresql://u@h/db", "maxconn": 4}}})
    assert isinstance(cfg.vector_store.config, PgVectorStoreConfig)
    assert cfg.vector_store.config.maxconn == 4


@pytest.mark.parametrize(("data", "expected"), [
    ({"llm": {"provider": "lmstuido"}}, ["llm.provider", "'lmstuido' is not a valid choice", "'lmstudio'"]),
    ({"llm": {"provider": "lmstudio", "config": {"modle": "x"}}},
     ["llm.config.modle", "did you mean `model`", "valid keys:"]),
    ({"embedder": {"provider": "ollama", "config": {"lmstudio_base_url": "http://x"}}},
     ["lmstudio_base_url", "not used by provider 'ollama'", "ollama_base_url"]),
    ({"vector_store": {"provider": "pgvector", "config": {"dns": "x"}}}, ["vector_store.config.dns", "`dsn`"]),
    ({"vector_store": {"provider": "qdrant"}}, ["vector_store.provider", "`sqlite`", "`pgvector`"]),
    ({"gateway": {"port": "eighty"}}, ["gateway.port", "valid integer"]),
    ({"memroy": {}}, ["memroy", "did you mean `memory`"]),
    ({"providers": {"lmstudio": {"provider": "lmstudio"}}}, ["shadows the provider"]),
])
def test_bad_config_names_the_key_path_and_choices(data: dict, expected: list[str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        MindgateConfig.from_dict(data)
    for fragment in expected:
        assert fragment in str(info.value)


def test_yaml_file_and_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mindgate.yaml"
    path.write_text("llm:\n  provider: ollama\n  config:\n    model: llama3.2\ngateway:\n  port: 9000\n")
    monkeypatch.setenv("MINDGATE_LLM__CONFIG__MODEL", "qwen2.5:7b")
    monkeypatch.setenv("MINDGATE_GATEWAY__PORT", "9100")
    cfg = MindgateConfig.from_file(path)
    assert cfg.llm.provider == "ollama"
    assert cfg.llm.config.model == "qwen2.5:7b"
    assert cfg.gateway.port == 9100
    monkeypatch.setenv("MINDGATE_CONFIG", str(path))
    assert MindgateConfig.load().llm.provider == "ollama"


def test_environment_override_with_unknown_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDGATE_GATEWAY__PROT", "1")
    with pytest.raises(ConfigurationError, match=r"gateway\.prot.*did you mean `port`"):
        MindgateConfig.from_dict({})


def test_missing_or_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read config file"):
        MindgateConfig.from_file(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm: [unclosed")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        MindgateConfig.from_file(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(ConfigurationError, match="must hold a mapping"):
        MindgateConfig.from_file(scalar)


def test_secrets_are_not_in_repr() -> None:
    cfg = MindgateConfig.from_dict({"llm": {"provider": "openai", "config": {"api_key": "sk-secret-123"}}})
    assert "sk-secret-123" not in repr(cfg)
