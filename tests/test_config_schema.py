"""The config file's JSON schema (``MindgateConfig.model_json_schema()``, ``mindgate config schema``): provider
sections as the discriminated union on ``provider`` they are validated as, checked with a JSON Schema validator
against what pydantic accepts and refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mindgate import ConfigurationError, MindgateConfig
from mindgate.cli import main
from mindgate.providers import provider_names, provider_spec

CORPUS = Path(__file__).parent / "data" / "mem0_configs"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return MindgateConfig.model_json_schema()


def _member_config(schema: dict[str, Any], section: str, provider: str) -> dict[str, Any]:
    member = schema["$defs"][section]["discriminator"]["mapping"][provider].rsplit("/", 1)[-1]
    member_schema = schema["$defs"][member]
    assert member_schema["properties"]["provider"]["const"] == provider
    config: dict[str, Any] = schema["$defs"][member_schema["properties"]["config"]["$ref"].rsplit("/", 1)[-1]]
    return config


def test_each_provider_section_is_a_union_of_the_providers_own_models(schema: dict[str, Any]) -> None:
    assert schema["properties"]["llm"] == {"$ref": "#/$defs/LLMSection"}
    assert schema["properties"]["providers"]["additionalProperties"] == {"$ref": "#/$defs/EndpointConfig"}
    assert schema["properties"]["embedders"]["additionalProperties"] == {"$ref": "#/$defs/EmbedderSection"}
    llm = schema["$defs"]["LLMSection"]
    assert llm["discriminator"]["propertyName"] == "provider" and len(llm["oneOf"]) == len(provider_names()) + 1
    assert set(llm["discriminator"]["mapping"]) == {"auto", *provider_names()}
    embedders = {n for n in provider_names() if provider_spec(n).embedder is not None}
    assert set(schema["$defs"]["EmbedderSection"]["discriminator"]["mapping"]) == embedders
    assert "ProviderConfig" not in schema["$defs"]  # the common base is no member of its own
    lmstudio = _member_config(schema, "LLMSection", "lmstudio")["properties"]
    assert {"lmstudio_base_url", "ttl", "n_ctx", "model", "api_key"} <= set(lmstudio)
    compat = _member_config(schema, "EndpointConfig", "openai_compatible")["properties"]
    assert "base_url" in compat and "ttl" not in compat and "lmstudio_base_url" not in compat
    assert "azure_kwargs" in _member_config(schema, "EmbedderSection", "azure_openai")["properties"]
    auto = schema["$defs"][llm["discriminator"]["mapping"]["auto"].rsplit("/", 1)[-1]]
    assert auto["properties"]["provider"]["default"] == "auto" and "required" not in auto  # `llm: {}` is auto


@pytest.mark.parametrize(("config", "valid"), [
    ({"llm": {"provider": "lmstudio", "config": {"ttl": 600, "lmstudio_base_url": "http://127.0.0.1:1234/v1"}}}, True),
    ({"llm": {"config": {"n_ctx": 4096}}}, True),  # no provider: auto, whose local engine takes n_ctx
    ({"llm": {"provider": "openai_compatible", "config": {"ttl": 600}}}, False),  # LM Studio's key
    ({"providers": {"lan": {"provider": "gemini", "config": {"lmstudio_base_url": "http://h/v1"}}}}, False),
    ({"embedder": {"provider": "auto"}}, False),  # auto is a chat chain
    ({"llm": {"provider": "lmstudoi"}}, False),
])
def test_the_schema_accepts_and_refuses_what_loading_does(schema: dict[str, Any], config: dict[str, Any],
                                                          valid: bool) -> None:
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
    assert not errors if valid else errors
    if valid:
        MindgateConfig.from_dict(config, env=False)
    else:
        with pytest.raises(ConfigurationError):
            MindgateConfig.from_dict(config, env=False)


def test_every_loaded_mem0_config_is_described_by_the_schema(schema: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    monkeypatch.setenv("MINDGATE_HOME", str(tmp_path))
    cases = [case for name in ("embedders.yaml", "llms.yaml", "memory.yaml")
             for case in yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))["cases"]]
    assert len(cases) >= 35
    for case in cases:
        for name, value in case["env"].items():
            monkeypatch.setenv(name, str(value))
        loaded = MindgateConfig.from_dict(case["config"], env=False)
        for dump in (loaded.model_dump(mode="json", exclude_unset=True), loaded.model_dump(mode="json")):
            errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(dump)]
            assert not errors, (case["source"], errors)


def test_a_dump_keeps_the_providers_own_keys() -> None:
    config = MindgateConfig.from_dict({"llm": {"provider": "lmstudio", "config": {"ttl": 600}}}, env=False)
    assert config.model_dump()["llm"]["config"]["ttl"] == 600  # dumped as LM Studio's model, not the common base


def test_mindgate_config_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == MindgateConfig.model_json_schema()
