"""The MINDGATE_* environment overlay (read by pydantic-settings): nested keys, YAML-typed values, and clear
errors for variables that name nothing."""

from __future__ import annotations

import pytest

from mindgate import ConfigurationError, MindgateConfig


def test_nested_keys_and_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDGATE_GATEWAY__CORS_ORIGINS", '["http://localhost:3000", "http://app.test"]')
    monkeypatch.setenv("mindgate_gateway__memory", "false")  # names are case-insensitive
    monkeypatch.setenv("MINDGATE_LLM__PROVIDER", "ollama")
    monkeypatch.setenv("MINDGATE_LLM__CONFIG__MODEL_KWARGS", "{num_ctx: 8192}")
    monkeypatch.setenv("MINDGATE_MEMORY__SEARCH_LIMIT", "7")
    cfg = MindgateConfig.from_dict({"llm": {"provider": "lmstudio", "config": {"model": "llama3.2"}}})
    assert cfg.gateway.cors_origins == ["http://localhost:3000", "http://app.test"]
    assert cfg.gateway.memory is False
    assert cfg.llm.provider == "ollama" and cfg.llm.config.model == "llama3.2"  # merged over the dict
    assert cfg.llm.config.model_kwargs == {"num_ctx": 8192}
    assert cfg.memory.search_limit == 7
    assert MindgateConfig.from_dict({}, env=False).memory.search_limit == 10


@pytest.mark.parametrize(("name", "message"), [
    ("MINDGATE_MEMROY__SEARCH_LIMIT", "did you mean `memory`"),
    ("MINDGATE_LLM____MODEL", "empty key segment"),
])
def test_a_variable_that_names_nothing_is_an_error(name: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigurationError, match=message):
        MindgateConfig.from_dict({})


def test_home_and_config_are_not_part_of_the_overlay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDGATE_HOME", "/tmp/somewhere")
    monkeypatch.setenv("MINDGATE_CONFIG", "/tmp/none.yaml")
    assert MindgateConfig.from_dict({}).llm.provider == "auto"
